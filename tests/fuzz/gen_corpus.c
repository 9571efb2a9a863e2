/* Writes seed inputs for the fuzz targets: valid encodings made by the
 * library itself.  Usage: gen_corpus DIR_ARGS DIR_PREP */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static int target(const mp_args *a)
{
    return (int)mp_args_count(a);
}

static void save(const char *dir, const char *name, uint8_t nfds, const mp_buf *b)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return;
    fwrite(&nfds, 1, 1, f);
    fwrite(b->data, 1, b->len, f);
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    mp_args *a;
    if (mp_args_of(&a, "ildsbf", 1, (int64_t)-2, 3.5, "str", "bytes", (size_t)5, 2) != 0)
        return 1;
    mp_buf b = MP_BUF_INIT;
    mp__fdvec v = {.n = 0};
    if (mp__args_encode(a, &b, &v) != 0)
        return 1;
    save(argv[1], "all_kinds", (uint8_t)v.n, &b);
    mp_process *p;
    if (mp_process_new(&p, NULL, target, a) != 0)
        return 1;
    b.len = 0;
    v.n = 0;
    if (mp__prep_encode(p, &b, &v) != 0)
        return 1;
    save(argv[2], "process", (uint8_t)v.n, &b);
    mp_buf_free(&b);
    mp_args_free(a);
    return mp_process_close(p) == 0 ? 0 : 1;
}
