#include "common/state_file.h"
