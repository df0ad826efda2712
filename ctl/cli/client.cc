#include "ctl/cli/client.h"
