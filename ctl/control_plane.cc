#include "ctl/control_plane.h"
