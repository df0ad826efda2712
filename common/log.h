// Named per-module loggers with levels settable at run time.
//
// A logger is a static object per module ("ctl", "dataplane", "hc", ...). Messages go to
// stderr as one line: time, level, module, text. Nothing on the packet path logs: workers
// count instead (see the drop counters). Log(...) checks the level before formatting.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace fulcrum {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

std::optional<LogLevel> LogLevelFromName(std::string_view name);
std::string_view LogLevelName(LogLevel level);

class Logger {
 public:
  explicit Logger(std::string_view module);
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  std::string_view module() const { return module_; }
  LogLevel level() const { return level_.load(std::memory_order_relaxed); }
  void set_level(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  bool enabled(LogLevel level) const { return level >= this->level(); }

  template <typename... Args>
  void Log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
    if (enabled(level)) {
      Write(level, fmt::format(format, std::forward<Args>(args)...));
    }
  }
  template <typename... Args>
  void Debug(fmt::format_string<Args...> format, Args&&... args) {
    Log(LogLevel::kDebug, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void Info(fmt::format_string<Args...> format, Args&&... args) {
    Log(LogLevel::kInfo, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void Warn(fmt::format_string<Args...> format, Args&&... args) {
    Log(LogLevel::kWarning, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void Error(fmt::format_string<Args...> format, Args&&... args) {
    Log(LogLevel::kError, format, std::forward<Args>(args)...);
  }

 private:
  void Write(LogLevel level, const std::string& text) const;

  std::string module_;
  std::atomic<LogLevel> level_;
};

// Sets the level of every logger whose module matches `module` ("*" for all). Returns the
// number of loggers changed.
int SetLogLevel(std::string_view module, LogLevel level);

// The level new loggers start at, and the one SetLogLevel("*") also applies.
void SetDefaultLogLevel(LogLevel level);

}  // namespace fulcrum
