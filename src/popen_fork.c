/* The fork start method: the child is a copy of the parent. */
#include "internal.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static int fork_start(mp_process *p)
{
    int self = mp__self_pidfd(); /* becomes the child's view of its parent */
    if (self < 0)
        return self;
    pid_t me = getpid();
    /* PR_SET_PDEATHSIG follows the forking thread: only the main thread
     * lives as long as the process. */
    pid_t direct = gettid() == me ? me : 0;
    mp__flush_stdio(); /* nothing buffered is printed twice */
    pid_t pid = mp__fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        mp__context_forked();
        mp__child_run(p, me, mp__me.proc.name, self, direct);
    }
    int pidfd = mp__sys_pidfd_open(pid);
    if (pidfd < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return pidfd;
    }
    p->pid = pid;
    p->pidfd = pidfd;
    return 0;
}

const mp__popen_ops mp__popen_fork = {
    .method = "fork",
    .start = fork_start,
    .wait = mp__popen_wait_pidfd,
};
