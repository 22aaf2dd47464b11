/* clipn-mpi --state DIR: one file per finished chunk, written to a temp file and renamed,
 * so a killed run leaves only whole chunks; a manifest names the subcommand and the key of
 * each job (a hash of the model and every input), so a different run is refused.
 *
 *   DIR/manifest                 "clipn-mpi state 1\ncommand classify\njob 0 heads <key> <n>\n..."
 *   DIR/<key>-<chunk>.chunk      magic, key, chunk, length, FNV-1a of the data, data
 */
#include "mpi_map.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *state_dir;
static char *manifest;  /* current text */

uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "clipn-mpi: --state %s: ", state_dir);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* Write data to path through path.tmp + fsync + rename. 0 or 1 (printed). */
static int write_atomic(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return fail("%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return fail("%s: %s", tmp, strerror(errno));
    const char *parts[2] = {a, b};
    size_t lens[2] = {na, nb};
    for (int k = 0; k < 2; k++)
        for (size_t off = 0; off < lens[k];) {
            ssize_t w = write(fd, parts[k] + off, lens[k] - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                int e = w < 0 ? errno : ENOSPC;
                close(fd);
                unlink(tmp);
                return fail("%s: %s", tmp, strerror(e));
            }
            off += (size_t)w;
        }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return fail("%s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return fail("%s: %s", path, strerror(e));
    }
    return 0;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *p = malloc(cap + 1);
    while (p) {
        n += fread(p + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *q = realloc(p, 2 * cap + 1);
        if (!q) {
            free(p);
            p = NULL;
            break;
        }
        p = q;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!p || err) {
        free(p);
        return NULL;
    }
    p[n] = '\0';
    *len = n;
    return p;
}

static int manifest_path(char *out, size_t cap)
{
    return (size_t)snprintf(out, cap, "%s/manifest", state_dir) < cap ? 0 : -1;
}

int state_open(const char *dir, const char *cmd)
{
    state_dir = dir;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return fail("cannot create the directory: %s", strerror(errno));
    char path[4096], want[256];
    if (manifest_path(path, sizeof path))
        return fail("path too long");
    snprintf(want, sizeof want, "clipn-mpi state 1\ncommand %s\n", cmd);
    size_t len = 0;
    manifest = read_all(path, &len);
    if (manifest) {
        if (strncmp(manifest, want, strlen(want)) != 0) {
            const char *c = strstr(manifest, "\ncommand ");
            char other[64] = "?";
            if (c)
                sscanf(c + 9, "%63s", other);
            return fail("made by `clipn-mpi %s`, not by this command: use another directory "
                        "(or remove it to start over)", other);
        }
        return 0;
    }
    if (errno != ENOENT)
        return fail("%s: %s", path, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return fail("not a directory");
    if (!(manifest = strdup(want)))
        return fail("out of memory");
    return write_atomic(path, manifest, strlen(manifest), NULL, 0);
}

int state_job(int seq, const char *kind, uint64_t key, size_t n_chunks)
{
    char line[256], prefix[64];
    snprintf(prefix, sizeof prefix, "job %d ", seq);
    snprintf(line, sizeof line, "job %d %s %016" PRIx64 " %zu\n", seq, kind, key, n_chunks);
    for (const char *l = manifest; l && *l;) {
        const char *end = strchr(l, '\n');
        size_t n = end ? (size_t)(end - l + 1) : strlen(l);
        if (!strncmp(l, prefix, strlen(prefix))) {
            if (n == strlen(line) && !strncmp(l, line, n))
                return 0;
            return fail("made from other inputs (job %d, %s): use another directory (or "
                        "remove it to start over)", seq, kind);
        }
        l += n;
    }
    size_t old = strlen(manifest);
    char *m = realloc(manifest, old + strlen(line) + 1);
    if (!m)
        return fail("out of memory");
    manifest = m;
    strcpy(manifest + old, line);
    char path[4096];
    manifest_path(path, sizeof path);
    return write_atomic(path, manifest, strlen(manifest), NULL, 0);
}

static void chunk_path(char *out, size_t cap, uint64_t key, size_t chunk)
{
    snprintf(out, cap, "%s/%016" PRIx64 "-%06zu.chunk", state_dir, key, chunk);
}

size_t state_scan(uint64_t key, size_t n_chunks, unsigned char *have)
{
    /* one directory listing, not a stat per chunk: a big job has 100,000s of them */
    DIR *d = opendir(state_dir);
    size_t n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        uint64_t k;
        size_t c;
        char tail[8] = "";
        if (sscanf(e->d_name, "%16" SCNx64 "-%zu.%7s", &k, &c, tail) == 3 && k == key &&
            !strcmp(tail, "chunk") && c < n_chunks && !have[c]) {
            have[c] = 1;
            n++;
        }
    }
    closedir(d);
    return n;
}

static const char magic[8] = {'C', 'L', 'I', 'P', 'N', 'M', 'P', '1'};

typedef struct chunk_header {
    char magic[8];
    uint64_t key, chunk, len, sum;
} chunk_header;

int state_load(uint64_t key, size_t chunk, mbuf *out)
{
    char path[4096];
    chunk_path(path, sizeof path, key, chunk);
    size_t len = 0;
    char *p = read_all(path, &len);
    chunk_header h;
    if (!p || len < sizeof h) {
        free(p);
        return 1;
    }
    memcpy(&h, p, sizeof h);
    if (memcmp(h.magic, magic, sizeof magic) || h.key != key || h.chunk != chunk ||
        h.len != len - sizeof h || h.sum != fnv1a(FNV_OFFSET, p + sizeof h, len - sizeof h)) {
        free(p);
        fprintf(stderr, "clipn-mpi: --state %s: %s is damaged; redoing that chunk\n",
                state_dir, path);
        return 1;
    }
    memmove(p, p + sizeof h, len - sizeof h);
    out->p = p;
    out->n = out->cap = len - sizeof h;
    out->oom = 0;
    return 0;
}

int state_save(uint64_t key, size_t chunk, const void *data, size_t len)
{
    char path[4096];
    chunk_path(path, sizeof path, key, chunk);
    chunk_header h;
    memcpy(h.magic, magic, sizeof magic);
    h.key = key;
    h.chunk = chunk;
    h.len = len;
    h.sum = fnv1a(FNV_OFFSET, data, len);
    return write_atomic(path, &h, sizeof h, data, len);
}
