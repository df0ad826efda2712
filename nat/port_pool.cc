#include "nat/port_pool.h"
