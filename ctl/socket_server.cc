#include "ctl/socket_server.h"
