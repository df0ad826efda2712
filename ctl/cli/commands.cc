#include "ctl/cli/commands.h"
