#include "nat/packet.h"
