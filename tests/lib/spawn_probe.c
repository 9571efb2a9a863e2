/*
 * A program that links the library (shared) and does nothing else.  The
 * spawn trust tests (tests/test_spawn_trust.c) run it with a
 * MULTIPROC_SPAWN marker the library must not act on, and look for the
 * line its main() prints:
 *
 *     spawn-probe main: secure=<AT_SECURE> marker=<MULTIPROC_SPAWN or (none)>
 *
 * With the argument "hook", main() first calls mp_main_hook(), as a
 * program that cannot rely on the library's constructor does.
 */
#include <multiproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "hook") == 0)
        mp_main_hook();
    const char *marker = getenv("MULTIPROC_SPAWN");
    /* mp_errname: a use of the library, so that it stays linked in */
    printf("spawn-probe main: secure=%lu marker=%s (%s)\n", getauxval(AT_SECURE),
           marker ? marker : "(none)", mp_errname(MP_EOF));
    return 0;
}
