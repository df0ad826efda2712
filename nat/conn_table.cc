#include "nat/conn_table.h"
