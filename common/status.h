// Status and Result<T>: how the control plane reports failure without exceptions.
//
// Every refused request carries an ErrorCode (a stable wire name such as "PortConflict")
// and a message that names the object and the reason. The codes are declared once, in
// FULCRUM_ERROR_CODES; the protocol, lbctl's exit codes and the tests all read that list.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace fulcrum {

// X(enumerator, wire name)
#define FULCRUM_ERROR_CODES(X)                 \
  X(kInvalidParameter, "InvalidParameter")     \
  X(kMissingParameter, "MissingParameter")     \
  X(kResourceNotFound, "ResourceNotFound")     \
  X(kPortConflict, "PortConflict")             \
  X(kAddressConflict, "AddressConflict")       \
  X(kAlreadyExists, "AlreadyExists")           \
  X(kResourceInUse, "ResourceInUse")           \
  X(kLimitExceeded, "LimitExceeded")           \
  X(kNotSupported, "NotSupported")             \
  X(kMalformedRequest, "MalformedRequest")     \
  X(kUnknownCommand, "UnknownCommand")         \
  X(kUnsupportedVersion, "UnsupportedVersion") \
  X(kRequestTooLarge, "RequestTooLarge")       \
  X(kUnavailable, "Unavailable")               \
  X(kTimeout, "Timeout")                       \
  X(kIoError, "IoError")                       \
  X(kCorruptState, "CorruptState")             \
  X(kInternal, "Internal")

enum class ErrorCode {
  kOk,
#define FULCRUM_ENUM_ENTRY(name, wire) name,
  FULCRUM_ERROR_CODES(FULCRUM_ENUM_ENTRY)
#undef FULCRUM_ENUM_ENTRY
};

// The wire name of a code ("Ok" for kOk).
std::string_view ErrorCodeName(ErrorCode code);
// Parses a wire name; nullopt when unknown.
std::optional<ErrorCode> ErrorCodeFromName(std::string_view name);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "PortConflict: listener port 80/tcp is already used by lsn-0a1b2c3d"
  std::string ToString() const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

// Builds a failed Status with a fmt-formatted message.
template <typename... Args>
Status Error(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
  return Status(code, fmt::format(format, std::forward<Args>(args)...));
}

// Either a T or a failed Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  // A Result built from an OK Status has neither a value nor an error; it becomes kInternal so
  // that ok() and status().ok() never disagree.
  Result(Status status)  // NOLINT(google-explicit-constructor)
      : v_(status.ok() ? Status(ErrorCode::kInternal, "Result built from an OK Status, no value")
                       : std::move(status)) {}

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace fulcrum

// Returns early from the enclosing function when `expr` (a Status) failed.
#define FULCRUM_RETURN_IF_ERROR(expr)           \
  do {                                          \
    ::fulcrum::Status fulcrum_status_ = (expr); \
    if (!fulcrum_status_.ok()) {                \
      return fulcrum_status_;                   \
    }                                           \
  } while (0)
