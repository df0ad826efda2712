#include "common/status.h"

#include <array>

namespace fulcrum {
namespace {

struct CodeName {
  ErrorCode code;
  std::string_view name;
};

constexpr std::array kCodeNames = {CodeName{ErrorCode::kOk, "Ok"},
#define FULCRUM_NAME_ENTRY(name, wire) CodeName{ErrorCode::name, wire},
                                   FULCRUM_ERROR_CODES(FULCRUM_NAME_ENTRY)
#undef FULCRUM_NAME_ENTRY
};

}  // namespace

std::string_view ErrorCodeName(ErrorCode code) {
  for (const auto& entry : kCodeNames) {
    if (entry.code == code) {
      return entry.name;
    }
  }
  return "Internal";
}

std::optional<ErrorCode> ErrorCodeFromName(std::string_view name) {
  for (const auto& entry : kCodeNames) {
    if (entry.name == name) {
      return entry.code;
    }
  }
  return std::nullopt;
}

std::string Status::ToString() const {
  if (ok()) {
    return "Ok";
  }
  return fmt::format("{}: {}", ErrorCodeName(code_), message_);
}

}  // namespace fulcrum
