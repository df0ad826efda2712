#include "nat/scheduler.h"
