#include "nat/tcp_state.h"
