// lbd's state file: the configuration that survives a restart.
//
// Theory of operation: the file holds one JSON object,
//   {"format": "fulcrum-state", "version": 1, <payload keys>...}
// where the payload is the model's ToJson(). A write never leaves a partial file behind: it
// goes to "<path>.tmp" in the same directory, is fsync'ed, renamed over the target (atomic
// on POSIX), and the directory is fsync'ed so the rename itself is durable. A crash before
// the rename leaves the old file authoritative and a stray temp file, which the next read
// deletes without looking at it. A file that exists but cannot be trusted is never
// treated as "no configuration": reading it fails with kCorruptState and lbd refuses to
// start, because starting empty would silently drop every load balancer.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace fulcrum {

inline constexpr const char* kStateFormat = "fulcrum-state";
inline constexpr int kStateVersion = 1;

// Where a write stages its data before the rename.
std::string StateFileTempPath(const std::string& path);

// Atomically replaces `path` with `payload` (an object without "format"/"version" keys)
// plus the format header. Creates the directory (mode 0750) when missing. kIoError with
// the errno text on any failure; the previous file is then untouched.
Status WriteStateFile(const std::string& path, const nlohmann::json& payload);

// The payload of `path` (the header stripped), or nullopt when the file does not exist.
// kCorruptState when it exists but is unreadable, empty, not JSON, or has a missing or
// wrong format/version. Removes a leftover temp file first.
Result<std::optional<nlohmann::json>> ReadStateFile(const std::string& path);

}  // namespace fulcrum
