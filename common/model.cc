#include "common/model.h"
