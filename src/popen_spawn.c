/* The spawn start method: a fresh execution of this program. */
#include "internal.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static int spawn_start(mp_process *p)
{
    mp_buf body = MP_BUF_INIT;
    mp__fdvec fds = {.n = 0};
    int sock = -1;
    pid_t pid;
    int pidfd;
    int err = mp__prep_encode(p, &body, &fds);
    if (err < 0)
        goto out;
    err = mp__spawn_exec(&sock, &pid, &pidfd);
    if (err < 0)
        goto out;
    err = mp__prep_send(sock, MP__ROLE_PROCESS, &body, &fds);
    if (err < 0) {
        /* the child cannot have read its orders: do not leave it behind */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        mp__sys_close(pidfd);
        goto out;
    }
    p->pid = pid;
    p->pidfd = pidfd;
out:
    mp__sys_close(sock);
    mp_buf_free(&body);
    return err;
}

const mp__popen_ops mp__popen_spawn = {
    .method = "spawn",
    .start = spawn_start,
    .wait = mp__popen_wait_pidfd,
};
