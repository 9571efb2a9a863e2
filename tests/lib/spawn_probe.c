/*
 * A program that links the library (shared) and does nothing else.  The
 * spawn trust tests (tests/test_spawn_trust.c) run it with a
 * MULTIPROC_SPAWN marker the library must not act on, and look for the
 * line its main() prints:
 *
 *     spawn-probe main: secure=<AT_SECURE> marker=<MULTIPROC_SPAWN or (none)>
 *
 * With the argument "hook", main() first calls mp_main_hook(), as a
 * program that cannot rely on the library's constructor does.  With
 * "spawn" or "forkserver" it then starts a process by that method and
 * prints "start=<mp_errname of mp_process_start>" and, when it started,
 * "exitcode=<the child's>".
 *
 * With SPAWN_PROBE_MARKS=<file> in the environment, main() appends
 * "main <pid>" to that file and the child's target "target <pid>"
 * (tests/test_process.c: a spawned child never runs main()).  A run that
 * finds SPAWN_PROBE_NESTED set (a child that wrongly ran main()) starts
 * nothing, so a broken bootstrap cannot fork without end.
 */
#include <fcntl.h>
#include <multiproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

/* LeakSanitizer (ASan builds) stops the process's threads at exit with
 * ptrace, which a set-user-ID process does not allow: no leak check there. */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
    return getauxval(AT_SECURE) != 0;
}

/* "<what> <pid>\n" appended to $SPAWN_PROBE_MARKS, if set. */
static void mark(const char *what)
{
    const char *path = getenv("SPAWN_PROBE_MARKS");
    if (path == NULL)
        return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    dprintf(fd, "%s %d\n", what, (int)getpid());
    close(fd);
}

static int child(const mp_args *args)
{
    (void)args;
    mark("target");
    return 7;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "hook") == 0)
        mp_main_hook();
    mark("main");
    const char *marker = getenv("MULTIPROC_SPAWN");
    /* mp_errname: a use of the library, so that it stays linked in */
    printf("spawn-probe main: secure=%lu marker=%s (%s)\n", getauxval(AT_SECURE),
           marker ? marker : "(none)", mp_errname(MP_EOF));
    fflush(stdout);
    if ((strcmp(mode, "spawn") == 0 || strcmp(mode, "forkserver") == 0) &&
        getenv("SPAWN_PROBE_NESTED") == NULL) {
        setenv("SPAWN_PROBE_NESTED", "1", 1);
        mp_process *p;
        int code = -1;
        int err = mp_process_new(&p, mp_get_context(mode), child, NULL);
        if (err == 0) {
            err = mp_process_start(p);
            if (err == 0)
                err = mp_process_join(p, -1);
            if (err == 0)
                err = mp_process_exitcode(p, &code);
            if (mp_process_close(p) != 0)
                err = MP_EINVAL;
        }
        printf("start=%s\n", err == 0 ? "ok" : mp_errname(err));
        if (err == 0)
            printf("exitcode=%d\n", code);
    }
    return 0;
}
