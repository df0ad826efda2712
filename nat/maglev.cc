#include "nat/maglev.h"
