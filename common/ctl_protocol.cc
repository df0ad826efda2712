#include "common/ctl_protocol.h"

#include <utility>

namespace fulcrum::protocol {
namespace {

using nlohmann::json;

std::optional<std::uint64_t> IdOf(const json& object) {
  auto it = object.find("id");
  if (it == object.end() || !it->is_number_unsigned()) {
    return std::nullopt;
  }
  return it->get<std::uint64_t>();
}

Status Malformed(std::string_view why) {
  return Error(ErrorCode::kMalformedRequest, "malformed request: {}", why);
}

json IdJson(std::optional<std::uint64_t> id) { return id ? json(*id) : json(nullptr); }

// Parses without exceptions. A value nested deeper than kMaxNestingDepth is refused: the parser
// itself is iterative, but dump(), comparison and copies of a json value recurse, so a line of
// a million '[' would otherwise overflow the stack of whoever handles it later.
json ParseLimited(std::string_view line, bool* too_deep) {
  *too_deep = false;
  json::parser_callback_t limit_depth = [too_deep](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth > kMaxNestingDepth) {
      *too_deep = true;
      return false;
    }
    return true;
  };
  return json::parse(line, limit_depth, /*allow_exceptions=*/false);
}

// The string member `key` of `object`, or `fallback` when absent or not a string.
std::string StringOr(const json& object, const char* key, std::string_view fallback) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) {
    return std::string(fallback);
  }
  return it->get<std::string>();
}

}  // namespace

ParsedRequest ParseRequest(std::string_view line) {
  if (line.size() + 1 > kMaxLineBytes) {
    return {std::nullopt, Error(ErrorCode::kRequestTooLarge, "request line of {} bytes exceeds {}",
                                line.size(), kMaxLineBytes)};
  }
  bool too_deep = false;
  json object = ParseLimited(line, &too_deep);
  if (too_deep) {
    return {std::nullopt,
            Malformed(fmt::format("JSON nested deeper than {} levels", kMaxNestingDepth))};
  }
  if (object.is_discarded()) {
    return {std::nullopt, Malformed("not valid JSON")};
  }
  if (!object.is_object()) {
    return {std::nullopt, Malformed("not a JSON object")};
  }
  const std::optional<std::uint64_t> id = IdOf(object);
  for (const auto& [key, value] : object.items()) {
    if (key != "v" && key != "id" && key != "cmd" && key != "args") {
      return {id, Malformed(fmt::format("unknown field '{}'", key))};
    }
  }
  if (!id) {
    return {std::nullopt, Malformed("'id' must be a non-negative integer")};
  }
  auto version = object.find("v");
  if (version == object.end() || !version->is_number_integer()) {
    return {id, Malformed("'v' must be an integer")};
  }
  if (version->get<std::int64_t>() != kVersion) {
    return {id,
            Error(ErrorCode::kUnsupportedVersion,
                  "protocol version {} is not supported (this is {})", version->dump(), kVersion)};
  }
  auto cmd = object.find("cmd");
  if (cmd == object.end() || !cmd->is_string() || cmd->get_ref<const std::string&>().empty()) {
    return {id, Malformed("'cmd' must be a non-empty string")};
  }
  Request request{.id = *id, .cmd = cmd->get<std::string>()};
  if (auto args = object.find("args"); args != object.end()) {
    if (!args->is_object()) {
      return {id, Malformed("'args' must be an object")};
    }
    request.args = std::move(*args);
  }
  return {id, std::move(request)};
}

std::string EncodeRequest(const Request& request) {
  json line = {{"v", kVersion}, {"id", request.id}, {"cmd", request.cmd}, {"args", request.args}};
  return line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string EncodeResult(std::optional<std::uint64_t> id, const json& result) {
  json line = {{"v", kVersion}, {"id", IdJson(id)}, {"ok", true}, {"result", result}};
  return line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string EncodeError(std::optional<std::uint64_t> id, const Status& status) {
  json line = {{"v", kVersion},
               {"id", IdJson(id)},
               {"ok", false},
               {"error", {{"code", ErrorCodeName(status.code())}, {"message", status.message()}}}};
  return line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

Response ParseResponse(std::string_view line) {
  bool too_deep = false;
  json object = ParseLimited(line, &too_deep);
  if (too_deep || object.is_discarded() || !object.is_object()) {
    return {std::nullopt, Malformed("response is not a JSON object")};
  }
  const std::optional<std::uint64_t> id = IdOf(object);
  auto ok = object.find("ok");
  if (ok == object.end() || !ok->is_boolean()) {
    return {id, Malformed("response has no boolean 'ok'")};
  }
  if (ok->get<bool>()) {
    auto result = object.find("result");
    return {id, result == object.end() ? json::object() : std::move(*result)};
  }
  auto error = object.find("error");
  if (error == object.end() || !error->is_object()) {
    return {id, Malformed("failed response has no 'error' object")};
  }
  const ErrorCode code =
      ErrorCodeFromName(StringOr(*error, "code", "Internal")).value_or(ErrorCode::kInternal);
  return {id, Status(code == ErrorCode::kOk ? ErrorCode::kInternal : code,
                     StringOr(*error, "message", "(no message)"))};
}

}  // namespace fulcrum::protocol
