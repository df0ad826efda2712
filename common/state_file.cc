#include "common/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace fulcrum {
namespace {

using nlohmann::json;

// Far above any real state (256 LBs x 64 groups x 1024 backends is ~1 GiB only in theory;
// real fleets hold a few MiB) yet small enough that a runaway file cannot exhaust memory.
constexpr std::size_t kMaxStateBytes = std::size_t{256} << 20;
// The state nests 5 levels deep; anything much deeper is not ours.
constexpr int kMaxStateDepth = 32;

std::string ErrnoText(int error) { return std::strerror(error); }

Status IoError(const std::string& path, std::string_view step, int error) {
  return Error(ErrorCode::kIoError, "cannot write state file {}: {}: {}", path, step,
               ErrnoText(error));
}

Status Corrupt(const std::string& path, std::string_view what) {
  return Error(ErrorCode::kCorruptState,
               "state file {} {}; lbd refuses to start rather than start with an empty "
               "configuration (fix or move the file away to start empty)",
               path, what);
}

std::string DirectoryOf(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : path.substr(0, slash);
}

// mkdir -p with mode 0750 for the directories it creates.
Status EnsureDirectory(const std::string& path, const std::string& dir) {
  struct stat info {};
  if (stat(dir.c_str(), &info) == 0) {
    return S_ISDIR(info.st_mode) ? Status::Ok()
                                 : IoError(path, dir + " is not a directory", ENOTDIR);
  }
  if (errno != ENOENT) {
    return IoError(path, "stat " + dir, errno);
  }
  const std::string parent = DirectoryOf(dir);
  if (parent != dir) {
    FULCRUM_RETURN_IF_ERROR(EnsureDirectory(path, parent));
  }
  if (mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return IoError(path, "mkdir " + dir, errno);
  }
  return Status::Ok();
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t written = write(fd, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Status(ErrorCode::kIoError, ErrnoText(errno));
    }
    data.remove_prefix(static_cast<std::size_t>(written));
  }
  return Status::Ok();
}

// Writes and fsyncs `text` into `temp`; the caller removes `temp` on failure.
Status WriteTemp(const std::string& path, const std::string& temp, const std::string& text) {
  const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) {
    return IoError(path, "open " + temp, errno);
  }
  Status status = WriteAll(fd, text);
  if (!status.ok()) {
    close(fd);
    return Error(ErrorCode::kIoError, "cannot write state file {}: write {}: {}", path, temp,
                 status.message());
  }
  if (fsync(fd) != 0) {
    const int error = errno;
    close(fd);
    return IoError(path, "fsync " + temp, error);
  }
  if (close(fd) != 0) {
    return IoError(path, "close " + temp, errno);
  }
  return Status::Ok();
}

Status SyncDirectory(const std::string& path, const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return IoError(path, "open " + dir, errno);
  }
  const int result = fsync(fd);
  const int error = errno;
  close(fd);
  return result == 0 ? Status::Ok() : IoError(path, "fsync " + dir, error);
}

// Reads the whole file; nullopt when it does not exist.
Result<std::optional<std::string>> ReadWhole(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return std::optional<std::string>();
    }
    return Corrupt(path, fmt::format("cannot be opened ({})", ErrnoText(errno)));
  }
  std::string text;
  char buffer[64 * 1024];
  while (true) {
    const ssize_t got = read(fd, buffer, sizeof(buffer));
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      const int error = errno;
      close(fd);
      return Corrupt(path, fmt::format("cannot be read ({})", ErrnoText(error)));
    }
    if (got == 0) {
      break;
    }
    text.append(buffer, static_cast<std::size_t>(got));
    if (text.size() > kMaxStateBytes) {
      close(fd);
      return Corrupt(path, fmt::format("is larger than {} bytes", kMaxStateBytes));
    }
  }
  close(fd);
  return std::optional<std::string>(std::move(text));
}

json ParseLimited(const std::string& text, bool* too_deep) {
  *too_deep = false;
  json::parser_callback_t limit_depth = [too_deep](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth > kMaxStateDepth) {
      *too_deep = true;
      return false;
    }
    return true;
  };
  return json::parse(text, limit_depth, /*allow_exceptions=*/false);
}

// Checks the header and strips it, leaving the payload.
Result<json> CheckHeader(const std::string& path, json document) {
  if (!document.is_object()) {
    return Corrupt(path, "does not hold a JSON object");
  }
  auto format = document.find("format");
  if (format == document.end() || !format->is_string() || *format != kStateFormat) {
    return Corrupt(
        path, fmt::format("is not a Fulcrum state file (\"format\" is {}, expected "
                          "\"{}\")",
                          format == document.end() ? "missing" : format->dump(), kStateFormat));
  }
  auto version = document.find("version");
  if (version == document.end() || !version->is_number_integer() || *version != kStateVersion) {
    return Corrupt(path, fmt::format("has state version {}, and this lbd reads version {}",
                                     version == document.end() ? "(missing)" : version->dump(),
                                     kStateVersion));
  }
  document.erase("format");
  document.erase("version");
  return document;
}

}  // namespace

std::string StateFileTempPath(const std::string& path) { return path + ".tmp"; }

Status WriteStateFile(const std::string& path, const json& payload) {
  if (!payload.is_object() || payload.contains("format") || payload.contains("version")) {
    return Error(ErrorCode::kInternal,
                 "state for {} must be an object without \"format\" or \"version\"", path);
  }
  json document = {{"format", kStateFormat}, {"version", kStateVersion}};
  document.update(payload);
  const std::string text = document.dump(1, ' ', false, json::error_handler_t::replace) + "\n";

  const std::string dir = DirectoryOf(path);
  FULCRUM_RETURN_IF_ERROR(EnsureDirectory(path, dir));
  const std::string temp = StateFileTempPath(path);
  Status status = WriteTemp(path, temp, text);
  if (status.ok() && rename(temp.c_str(), path.c_str()) != 0) {
    status = IoError(path, "rename " + temp, errno);
  }
  if (!status.ok()) {
    unlink(temp.c_str());
    return status;
  }
  // The new file is in place; a failed directory fsync means it may not survive a power cut.
  return SyncDirectory(path, dir);
}

Result<std::optional<json>> ReadStateFile(const std::string& path) {
  // A temp file is what a crash between write and rename leaves; the target is still the
  // last complete state, so the temp file is garbage whatever it holds.
  unlink(StateFileTempPath(path).c_str());
  Result<std::optional<std::string>> text = ReadWhole(path);
  if (!text.ok()) {
    return text.status();
  }
  if (!text->has_value()) {
    return std::optional<json>();
  }
  if ((*text)->find_first_not_of(" \t\r\n") == std::string::npos) {
    return Corrupt(path, "is empty");
  }
  bool too_deep = false;
  json document = ParseLimited(**text, &too_deep);
  if (too_deep) {
    return Corrupt(path, fmt::format("nests deeper than {} levels", kMaxStateDepth));
  }
  if (document.is_discarded()) {
    return Corrupt(
        path, fmt::format("is not valid JSON ({} bytes; truncated or garbled?)", (*text)->size()));
  }
  Result<json> payload = CheckHeader(path, std::move(document));
  if (!payload.ok()) {
    return payload.status();
  }
  return std::optional<json>(std::move(payload).value());
}

}  // namespace fulcrum
