/*
 * A test executable with no test at all (the runner's main alone): the
 * harness's selftest checks that it fails instead of passing with nothing.
 */
#include "mp_test.h"

typedef int mp_runner_empty_unit; /* ISO C wants a declaration */
