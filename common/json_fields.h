// Typed access to the fields of one JSON object, for request arguments and the state file.
//
// Theory of operation: a JsonFields reader wraps one object and hands out its fields by
// name, checking the exact JSON type (a port is a number, never a string). It keeps the
// first error and returns empty values after it, so that a handler reads every field in a
// row and checks once with Finish(), which also refuses any field nobody asked for. The same
// reader serves two audiences that differ only in wording and error codes:
//   - request arguments: InvalidParameter / MissingParameter, "argument 'health_check.port'";
//   - the state file: CorruptState for everything, every field required, and the message
//     names the path ("listeners[2].port").
// Header-only: it is small and used by common/model and ctl/control_plane alike.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace fulcrum {

enum class Presence { kRequired, kOptional };

class JsonFields {
 public:
  // Request arguments; `prefix` ("health_check.") qualifies the names of nested fields.
  static JsonFields ForArgs(const nlohmann::json& object, std::string prefix = "") {
    return JsonFields(object, std::move(prefix), /*state=*/false);
  }
  // A state-file object at `path` ("listeners[2]"); every field is required.
  static JsonFields ForState(const nlohmann::json& object, std::string path) {
    return JsonFields(object, std::move(path), /*state=*/true);
  }

  // A reader over the object at `key`; an absent optional object reads as {}.
  JsonFields Nested(std::string_view key, Presence presence) {
    static const nlohmann::json kEmpty = nlohmann::json::object();
    const nlohmann::json* value = Find(key, presence, "an object", &nlohmann::json::is_object);
    const std::string path = state_ ? Path(key) : prefix_ + std::string(key) + ".";
    return JsonFields(value == nullptr ? kEmpty : *value, path, state_);
  }

  bool Has(std::string_view key) const {
    return object_->is_object() && object_->contains(std::string(key));
  }

  std::optional<std::string> String(std::string_view key, Presence presence) {
    const nlohmann::json* value = Find(key, presence, "a string", &nlohmann::json::is_string);
    return value == nullptr ? std::nullopt : std::optional(value->get<std::string>());
  }

  std::optional<bool> Bool(std::string_view key, Presence presence) {
    const nlohmann::json* value = Find(key, presence, "true or false", &nlohmann::json::is_boolean);
    return value == nullptr ? std::nullopt : std::optional(value->get<bool>());
  }

  // An integer that fits in int64; floats and numeric strings are refused.
  std::optional<std::int64_t> Int(std::string_view key, Presence presence) {
    const nlohmann::json* value =
        Find(key, presence, "an integer", &nlohmann::json::is_number_integer);
    if (value == nullptr) {
      return std::nullopt;
    }
    if (value->is_number_unsigned() &&
        value->get<std::uint64_t>() >
            static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      Fail(BadValue(key, "an integer of at most 2^63-1"));
      return std::nullopt;
    }
    return value->get<std::int64_t>();
  }

  std::optional<std::vector<std::string>> StringArray(std::string_view key, Presence presence) {
    const nlohmann::json* value =
        Find(key, presence, "an array of strings", &nlohmann::json::is_array);
    if (value == nullptr) {
      return std::nullopt;
    }
    std::vector<std::string> strings;
    for (const nlohmann::json& element : *value) {
      if (!element.is_string()) {
        Fail(BadValue(key, "an array of strings"));
        return std::nullopt;
      }
      strings.push_back(element.get<std::string>());
    }
    return strings;
  }

  // The array at `key`, for the caller to walk; nullptr when absent or on error.
  const nlohmann::json* Array(std::string_view key, Presence presence) {
    return Find(key, presence, "an array", &nlohmann::json::is_array);
  }

  // "argument 'health_check.port'" or "listeners[2].health_check.port".
  std::string Name(std::string_view key) const {
    return state_ ? Path(key) : fmt::format("argument '{}{}'", prefix_, key);
  }

  // A refusal of the value at `key`, worded "NAME must be WHAT, not VALUE".
  Status BadValue(std::string_view key, std::string_view what) const {
    std::string shown = "nothing";
    if (Has(key)) {
      shown = object_->at(std::string(key))
                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      if (shown.size() > 64) {
        shown = shown.substr(0, 61) + "...";
      }
    }
    return Error(state_ ? ErrorCode::kCorruptState : ErrorCode::kInvalidParameter,
                 "{} must be {}, not {}", Name(key), what, shown);
  }

  // Wraps a failure of the value at `key` found by someone else (the model's validation).
  Status Wrap(std::string_view key, const Status& status) const {
    return Status(state_ ? ErrorCode::kCorruptState : status.code(),
                  fmt::format("{}: {}", Name(key), status.message()));
  }

  // Records `status` unless an earlier failure is already recorded.
  void Fail(Status status) {
    if (error_.ok()) {
      error_ = std::move(status);
    }
  }

  bool ok() const { return error_.ok(); }

  // The first failure; otherwise a refusal of the first field that nobody read.
  Status Finish() const {
    if (!error_.ok()) {
      return error_;
    }
    if (!object_->is_object()) {
      return Error(state_ ? ErrorCode::kCorruptState : ErrorCode::kInvalidParameter,
                   "{} must be an object", state_ ? path_or_top() : "arguments");
    }
    for (const auto& [key, value] : object_->items()) {
      if (seen_.count(key) == 0) {
        return Error(state_ ? ErrorCode::kCorruptState : ErrorCode::kInvalidParameter, "unknown {}",
                     Name(key));
      }
    }
    return Status::Ok();
  }

 private:
  JsonFields(const nlohmann::json& object, std::string prefix, bool state)
      : object_(&object), prefix_(std::move(prefix)), state_(state) {}

  std::string Path(std::string_view key) const {
    return prefix_.empty() ? std::string(key) : fmt::format("{}.{}", prefix_, key);
  }
  std::string path_or_top() const { return prefix_.empty() ? "the state" : prefix_; }

  const nlohmann::json* Find(std::string_view key, Presence presence, std::string_view what,
                             bool (nlohmann::json::*is_type)() const noexcept) {
    const std::string name(key);
    seen_.insert(name);
    if (!error_.ok() || !object_->is_object()) {
      return nullptr;
    }
    auto it = object_->find(name);
    if (it == object_->end()) {
      if (presence == Presence::kRequired || state_) {
        Fail(state_ ? Error(ErrorCode::kCorruptState, "{} is missing", Name(key))
                    : Error(ErrorCode::kMissingParameter, "missing {}", Name(key)));
      }
      return nullptr;
    }
    if (!((*it).*is_type)()) {
      Fail(BadValue(key, what));
      return nullptr;
    }
    return &*it;
  }

  const nlohmann::json* object_;
  std::string prefix_;  // args: "health_check."; state: "listeners[2]"
  bool state_;
  std::set<std::string> seen_;
  Status error_;
};

}  // namespace fulcrum
