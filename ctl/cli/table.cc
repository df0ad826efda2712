#include "ctl/cli/table.h"
