/* libFuzzer target: the resource tracker's commands, as any process of the
 * program writes them on the tracker's socket ("REGISTER:/name:shared_memory\n",
 * one SOCK_SEQPACKET message each; resource_tracker.c).
 *
 * The input is a run of messages, each a 2-byte little-endian length (the
 * top bits ignored: 0..1023) and that many bytes.  As the tracker's read
 * loop does, one longer than 512 bytes is dropped unread.  Each message is
 * copied into a buffer of exactly its length, so that a read past its end
 * is caught, and given to the tracker's parser (mp__tracker_handle).
 *
 * Oracles: the parser answers 0 or MP_EBADMSG; every name the set holds is
 * one shm_unlink may get ("/" and 1..250 characters, no other slash), and
 * the set counts each once; and for every name held, the command the
 * library itself writes to unregister it removes exactly that name, and
 * registering it again puts it back. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MSG_MAX 512

static void fz_valid_name(const char *name, void *arg)
{
    size_t len = strlen(name);
    if (len < 2 || len > 251 || name[0] != '/' || strchr(name + 1, '/') != NULL)
        __builtin_trap(); /* the tracker would hand shm_unlink any path */
    ++*(size_t *)arg;
}

static mp__tracker_registry *fz_creating; /* creations under way, this input's */

/* Send one command in the library's own form (resource_tracker.c). */
static int fz_command(mp__tracker_registry *g, const char *cmd, const char *name)
{
    char msg[MSG_MAX + 1];
    int n = snprintf(msg, sizeof msg, "%s:%s:shared_memory\n", cmd, name);
    if (n < 0 || n > MSG_MAX)
        __builtin_trap(); /* a valid name always fits */
    return mp__tracker_handle(g, fz_creating, msg, (size_t)n);
}

struct fz_names {
    char **names;
    size_t n;
};

static void fz_collect(const char *name, void *arg)
{
    struct fz_names *c = arg;
    c->names[c->n++] = strdup(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mp__log_level = MP_LOG_OFF; /* each malformed message would print a warning */
    mp__tracker_registry *g = mp__tracker_registry_new();
    fz_creating = mp__tracker_registry_new();
    if (g == NULL || fz_creating == NULL) {
        mp__tracker_registry_free(g);
        mp__tracker_registry_free(fz_creating);
        return 0;
    }
    size_t off = 0;
    while (off + 2 <= size) {
        size_t len = (size_t)(data[off] | data[off + 1] << 8) & 1023;
        off += 2;
        if (len > size - off)
            len = size - off;
        const uint8_t *p = data + off;
        off += len;
        if (len > MSG_MAX)
            continue; /* the tracker drops an overlong message */
        char *msg = malloc(len ? len : 1);
        if (msg == NULL)
            break;
        memcpy(msg, p, len);
        int r = mp__tracker_handle(g, fz_creating, msg, len);
        free(msg);
        if (r != 0 && r != MP_EBADMSG)
            __builtin_trap();
    }

    size_t valid = 0, n = mp__tracker_registry_each(fz_creating, fz_valid_name, &valid);
    if (valid != n)
        __builtin_trap(); /* temporary names too: the tracker unlinks them */
    valid = 0;
    n = mp__tracker_registry_each(g, fz_valid_name, &valid);
    if (valid != n)
        __builtin_trap();
    struct fz_names all = {calloc(n + 1, sizeof(char *)), 0};
    if (all.names == NULL) {
        mp__tracker_registry_free(g);
        mp__tracker_registry_free(fz_creating);
        return 0;
    }
    mp__tracker_registry_each(g, fz_collect, &all);
    for (size_t i = 0; i < all.n; i++) {
        if (all.names[i] == NULL)
            continue;
        size_t before = mp__tracker_registry_each(g, fz_valid_name, &valid);
        for (size_t k = 0; k < i; k++) /* a set: no name twice */
            if (all.names[k] != NULL && strcmp(all.names[k], all.names[i]) == 0)
                __builtin_trap();
        if (fz_command(g, "UNREGISTER", all.names[i]) != 0 ||
            mp__tracker_registry_each(g, fz_valid_name, &valid) != before - 1)
            __builtin_trap(); /* the library's own command must remove it */
        if (fz_command(g, "REGISTER", all.names[i]) != 0 ||
            mp__tracker_registry_each(g, fz_valid_name, &valid) != before)
            __builtin_trap();
    }
    for (size_t i = 0; i < all.n; i++)
        free(all.names[i]);
    free(all.names);
    mp__tracker_registry_free(g);
    mp__tracker_registry_free(fz_creating);
    return 0;
}
