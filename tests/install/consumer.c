/* An out-of-tree program built against the installed library: starts one
 * child under each start method and checks its exit code. */
#include <multiproc.h>
#include <stdio.h>
#include <string.h>

static int child(const mp_args *args)
{
    return (int)mp_args_int(args, 0);
}

int main(void)
{
    const char *methods[3];
    size_t n = mp_get_all_start_methods(methods, 3);
    for (size_t i = 0; i < n && i < 3; i++) {
        mp_args *a;
        mp_process *p;
        int code = -1;
        if (mp_args_of(&a, "l", (int64_t)(40 + i)) < 0 ||
            mp_process_new(&p, mp_get_context(methods[i]), child, a) < 0)
            return 1;
        mp_args_free(a);
        if (mp_process_start(p) < 0 || mp_process_join(p, 60) < 0 ||
            mp_process_exitcode(p, &code) < 0 || code != (int)(40 + i)) {
            fprintf(stderr, "consumer: %s: exit code %d\n", methods[i], code);
            return 1;
        }
        mp_process_close(p);
    }
    printf("consumer: %s ok\n", mp_version());
    return 0;
}
