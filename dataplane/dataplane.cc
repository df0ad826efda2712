#include "dataplane/dataplane.h"
