#include "common/net_addr.h"
