// lb-healthd's logger ("hc"): transitions at info, trouble at warning, single probes at debug.
#pragma once

#include "common/log.h"

namespace fulcrum::hc {

inline Logger& HcLog() {
  static Logger logger("hc");
  return logger;
}

}  // namespace fulcrum::hc
