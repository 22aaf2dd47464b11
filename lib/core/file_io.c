/* The library's file access in one place: every input is opened without blocking and
 * checked to be a regular file of bounded size before a byte is read (a FIFO would block
 * forever, /dev/zero would read without end), and every output is written to a temporary
 * file beside the target and renamed over it only when complete and on disk. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

clipn_status clipn_open_input(const char *path, uint64_t max_bytes, int *fd_out,
                              uint64_t *size_out, struct stat *st_out, clipn_error *err)
{
    *fd_out = -1;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return clipn_fail(err, CLIPN_E_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return clipn_fail(err, CLIPN_E_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return clipn_fail(err, CLIPN_E_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: file of %llu bytes exceeds the %llu-byte limit",
                          path, (unsigned long long)st.st_size, (unsigned long long)max_bytes);
    }
    *fd_out = fd;
    *size_out = (uint64_t)st.st_size;
    if (st_out)
        *st_out = st;
    return CLIPN_OK;
}

clipn_status clipn_read_file(const char *path, uint64_t max_bytes, uint8_t **data_out,
                             size_t *len_out, clipn_error *err)
{
    *data_out = NULL;
    *len_out = 0;
    int fd;
    uint64_t size;
    clipn_status st = clipn_open_input(path, max_bytes, &fd, &size, NULL, err);
    if (st != CLIPN_OK)
        return st;
    if (size > SIZE_MAX - 1) {
        close(fd);
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: file too large", path);
    }
    size_t len = (size_t)size;
    uint8_t *buf = malloc(len + 1); /* +1: room for a NUL, and never malloc(0) */
    if (!buf) {
        close(fd);
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for %zu bytes", path, len);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) { /* an error, or the file shrank under us */
            int e = r < 0 ? errno : 0;
            close(fd);
            free(buf);
            return clipn_fail(err, CLIPN_E_IO, "%s: read error%s%s", path, e ? ": " : " (file "
                              "shrank while read)", e ? strerror(e) : "");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    *data_out = buf;
    *len_out = len;
    return CLIPN_OK;
}

/* ------------------------------------------------------------------ atomic output */

static int write_all(int fd, const void *data, size_t n)
{
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

clipn_status clipn_output_begin(clipn_output *o, const char *path, clipn_error *err)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    /* The file to replace: a symlink is followed (its target is replaced, the link kept);
     * anything but a regular file (a device, a FIFO, a directory) is refused, since
     * renaming over it would destroy what is there. */
    struct stat st;
    char *target = NULL;
    if (stat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return clipn_fail(err, CLIPN_E_IO, "%s: exists and is not a regular file", path);
        target = realpath(path, NULL);
        if (!target)
            return clipn_fail(err, errno == ENOMEM ? CLIPN_E_NOMEM : CLIPN_E_IO, "%s: %s", path,
                              strerror(errno));
    } else if (errno == ENOENT) {
        struct stat lst;
        if (lstat(path, &lst) == 0) /* a dangling symlink: do not replace the link */
            return clipn_fail(err, CLIPN_E_IO, "%s: is a symbolic link to a missing file",
                              path);
        target = strdup(path);
        if (!target)
            return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
    } else {
        return clipn_fail(err, CLIPN_E_IO, "%s: %s", path, strerror(errno));
    }
    const char *slash = strrchr(target, '/');
    size_t dir_len = slash ? (size_t)(slash - target) + 1 : 0;
    size_t cap = strlen(target) + 32;
    o->tmp = malloc(cap);
    if (!o->tmp) {
        free(target);
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
    }
    o->path = path;
    o->target = target;
    /* O_EXCL on a fresh name: never opens anything that exists; mode 0666 under the umask
     * like any new file */
    static unsigned counter;
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned r = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL) ^
                     __atomic_add_fetch(&counter, 1u, __ATOMIC_RELAXED) * 40503u;
        snprintf(o->tmp, cap, "%.*s.%s.%08x.tmp", (int)dir_len, target, target + dir_len, r);
        o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (o->fd >= 0 || errno != EEXIST)
            break;
    }
    if (o->fd < 0) {
        int e = errno;
        free(o->tmp);
        free(o->target);
        memset(o, 0, sizeof *o);
        o->fd = -1;
        return clipn_fail(err, CLIPN_E_IO, "%s: cannot create a temporary file beside it: %s",
                          path, strerror(e));
    }
    return CLIPN_OK;
}

void clipn_output_write(clipn_output *o, const void *data, size_t n)
{
    if (o->fd < 0 || o->error)
        return;
    if (write_all(o->fd, data, n) != 0)
        o->error = errno ? errno : EIO;
}

static void output_cleanup(clipn_output *o)
{
    if (o->fd >= 0)
        close(o->fd);
    if (o->tmp)
        unlink(o->tmp); /* only ever the file we created */
    free(o->tmp);
    free(o->target);
    o->fd = -1;
    o->tmp = o->target = NULL;
}

clipn_status clipn_output_commit(clipn_output *o, clipn_error *err)
{
    if (o->fd < 0)
        return clipn_fail(err, CLIPN_E_INTERNAL, "output not open");
    int e = o->error;
    if (!e && fsync(o->fd) != 0)
        e = errno;
    if (close(o->fd) != 0 && !e)
        e = errno;
    o->fd = -1;
    if (!e && rename(o->tmp, o->target) != 0)
        e = errno;
    if (e) {
        clipn_status st = clipn_fail(err, CLIPN_E_IO, "%s: write failed: %s", o->path,
                                     strerror(e));
        output_cleanup(o);
        return st;
    }
    /* the rename itself on disk: sync the folder (best effort, not every fs allows it) */
    char *slash = strrchr(o->target, '/');
    if (slash) {
        slash[1] = '\0';
        int dfd = open(o->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    free(o->tmp);
    o->tmp = NULL; /* renamed: nothing to unlink */
    output_cleanup(o);
    return CLIPN_OK;
}

void clipn_output_abort(clipn_output *o)
{
    output_cleanup(o);
}
