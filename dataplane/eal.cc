#include "dataplane/eal.h"
