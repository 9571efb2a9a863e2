/* Replays a fuzz target's corpus without libFuzzer (gcc builds, CTest):
 * each argument is a file or a directory of files. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* As libFuzzer: called first when the target defines it.  It gets no
 * corpus directory, so a target that writes a seed there writes none into
 * the checked-in corpus. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 1;
}

int main(int argc, char **argv)
{
    int count = 0;
    if (LLVMFuzzerInitialize) {
        int one = 1;
        char *name_only[] = {argv[0], NULL}, **args = name_only;
        LLVMFuzzerInitialize(&one, &args);
    }
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (d == NULL) {
            count += run_file(argv[i]);
            continue;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            count += run_file(path);
        }
        closedir(d);
    }
    /* and a few fixed edge inputs */
    static const uint8_t edge[][12] = {{0}, {1, 'M', 'P', 'A', '1'}, {7, 0xff, 0xff, 0xff, 0xff}};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
        LLVMFuzzerTestOneInput(edge[i], sizeof edge[i]);
    printf("replayed %d inputs\n", count);
    return count > 0 ? 0 : 1;
}
