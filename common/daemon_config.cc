#include "common/daemon_config.h"
