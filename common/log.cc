#include "common/log.h"

#include <cstdio>
#include <ctime>
#include <mutex>
#include <vector>

namespace fulcrum {
namespace {

struct Registry {
  std::mutex mutex;
  std::vector<Logger*> loggers;
  LogLevel default_level = LogLevel::kInfo;
};

Registry& GetRegistry() {
  static Registry registry;
  return registry;
}

constexpr std::string_view kLevelNames[] = {"debug", "info", "warning", "error"};

}  // namespace

std::optional<LogLevel> LogLevelFromName(std::string_view name) {
  for (int i = 0; i < 4; ++i) {
    if (kLevelNames[i] == name) {
      return static_cast<LogLevel>(i);
    }
  }
  if (name == "warn") {
    return LogLevel::kWarning;
  }
  return std::nullopt;
}

std::string_view LogLevelName(LogLevel level) { return kLevelNames[static_cast<int>(level)]; }

Logger::Logger(std::string_view module) : module_(module), level_(LogLevel::kInfo) {
  Registry& registry = GetRegistry();
  std::lock_guard lock(registry.mutex);
  level_.store(registry.default_level, std::memory_order_relaxed);
  registry.loggers.push_back(this);
}

void Logger::Write(LogLevel level, const std::string& text) const {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm local{};
  gmtime_r(&now.tv_sec, &local);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &local);
  std::fprintf(stderr, "%s.%03ldZ %-7s %s: %s\n", stamp, now.tv_nsec / 1000000,
               std::string(LogLevelName(level)).c_str(), module_.c_str(), text.c_str());
}

int SetLogLevel(std::string_view module, LogLevel level) {
  Registry& registry = GetRegistry();
  std::lock_guard lock(registry.mutex);
  int changed = 0;
  for (Logger* logger : registry.loggers) {
    if (module == "*" || logger->module() == module) {
      logger->set_level(level);
      ++changed;
    }
  }
  return changed;
}

void SetDefaultLogLevel(LogLevel level) {
  Registry& registry = GetRegistry();
  {
    std::lock_guard lock(registry.mutex);
    registry.default_level = level;
  }
  SetLogLevel("*", level);
}

}  // namespace fulcrum
