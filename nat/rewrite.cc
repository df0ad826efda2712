#include "nat/rewrite.h"
