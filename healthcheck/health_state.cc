#include "healthcheck/health_state.h"
