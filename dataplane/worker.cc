#include "dataplane/worker.h"
