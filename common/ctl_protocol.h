// The control protocol's framing: one JSON object per line (docs/ctl-protocol.md).
//
// Pure encode/decode shared by lbd's socket server and its clients (lbctl, lb-healthd).
// Nothing here does I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace fulcrum::protocol {

inline constexpr int kVersion = 1;
inline constexpr std::size_t kMaxLineBytes = 1 << 20;  // including the '\n'
// Deepest JSON nesting a request or response may have (the line's object is depth 0).
inline constexpr int kMaxNestingDepth = 64;

struct Request {
  std::uint64_t id = 0;
  std::string cmd;
  nlohmann::json args = nlohmann::json::object();
};

// A decoded request, or the error to send back. `id` is set whenever the line carried a
// usable id, so that even a refused request is answered with its id.
struct ParsedRequest {
  std::optional<std::uint64_t> id;
  Result<Request> request;
};

// Decodes one line (without its '\n').
ParsedRequest ParseRequest(std::string_view line);

// Encodes a request as one line, '\n' included.
std::string EncodeRequest(const Request& request);

// Encodes a response line ('\n' included). A null id is written as JSON null.
std::string EncodeResult(std::optional<std::uint64_t> id, const nlohmann::json& result);
std::string EncodeError(std::optional<std::uint64_t> id, const Status& status);

struct Response {
  std::optional<std::uint64_t> id;
  Result<nlohmann::json> result;  // the result, or the error the server sent
};

// Decodes a response line. A line that is not a valid response gives a kMalformedRequest
// status in `result`.
Response ParseResponse(std::string_view line);

}  // namespace fulcrum::protocol
