/* A library no peer may make a process load: its constructor leaves a mark
 * (creates the file named by MP_TEST_EVIL_MARKER), so a test can tell
 * whether it ever ran — in this process or in a manager server. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int mp_testevil_action(void);

__attribute__((constructor)) static void mp_testevil_loaded(void)
{
    const char *mark = getenv("MP_TEST_EVIL_MARKER");
    if (mark != NULL) {
        int fd = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0)
            close(fd);
    }
}

int mp_testevil_action(void)
{
    return 66;
}
