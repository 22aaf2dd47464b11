/* Every file the CLI writes goes through here: a temporary file in the target's folder,
 * every write checked (the first error's errno is kept for the message), fsync, then
 * rename into place. On any failure the target is untouched and the temporary removed;
 * nothing the tool did not create is ever unlinked. Standard output gets the same error
 * tracking (cli_stdout_init / cli_stdout_close). */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ checked streams */

typedef struct out_cookie {
    int fd;
    int err; /* errno of the first failed write, 0 if none */
} out_cookie;

static ssize_t cookie_write(void *c, const char *buf, size_t n)
{
    out_cookie *k = c;
    size_t done = 0;
    if (k->err) {
        errno = k->err;
        return -1;
    }
    while (done < n) {
        ssize_t w = write(k->fd, buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            k->err = w < 0 ? errno : EIO;
            errno = k->err;
            return -1;
        }
        done += (size_t)w;
    }
    return (ssize_t)n;
}

static int cookie_close(void *c)
{
    (void)c; /* the fd is closed by the owner, after fsync */
    return 0;
}

static FILE *checked_stream(out_cookie *k)
{
    cookie_io_functions_t io = {.read = NULL, .write = cookie_write, .seek = NULL,
                                .close = cookie_close};
    return fopencookie(k, "w", io);
}

/* ------------------------------------------------------------------ standard output */

static out_cookie stdout_cookie = {STDOUT_FILENO, 0};
static FILE *stdout_orig;

void cli_stdout_init(void)
{
    FILE *f = checked_stream(&stdout_cookie);
    if (!f)
        return; /* keep libc's stdout; errors are still seen through ferror */
    if (isatty(STDOUT_FILENO))
        setvbuf(f, NULL, _IOLBF, 0);
    stdout_orig = stdout;
    stdout = f;
}

int cli_stdout_close(const char *cmd)
{
    int bad = fflush(stdout) != 0 || ferror(stdout);
    if (!bad)
        return 0;
    int e = stdout_orig ? stdout_cookie.err : errno;
    cli_fail(cmd, "standard output: %s", e ? strerror(e) : "write error");
    return 1;
}

int cli_stdout_failed(void)
{
    return ferror(stdout) || stdout_cookie.err;
}

/* ------------------------------------------------------------------ files */

struct cli_out {
    FILE *f;
    out_cookie k;
    const char *cmd, *path; /* path as given, for messages */
    char *target;           /* what is renamed onto (symlinks resolved) */
    char *tmp;              /* NULL when writing a device or FIFO in place */
};

/* The file a write to `path` really replaces: symlinks followed. NULL (errno) when
 * `path` is a dangling link. *exists says whether it exists. */
static char *resolve_target(const char *path, struct stat *st, int *exists)
{
    struct stat lst;
    *exists = 0;
    if (lstat(path, &lst) != 0)
        return errno == ENOENT ? strdup(path) : NULL;
    if (!S_ISLNK(lst.st_mode)) {
        *st = lst;
        *exists = 1;
        return strdup(path);
    }
    if (stat(path, st) != 0)
        return NULL; /* dangling link: writing would create a file somewhere else */
    *exists = 1;
    return realpath(path, NULL);
}

/* The folder of path, as a new string ("." when path has no '/'). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

int cli_out_check(const char *cmd, const char *opt, const char *path)
{
    struct stat st;
    int exists, rc = 0;
    char *target = resolve_target(path, &st, &exists);
    if (!target) {
        if (errno == ENOMEM)
            return cli_fail(cmd, "out of memory");
        return cli_fail(cmd, "%s %s: %s", opt, path,
                        errno == ENOENT ? "dangling symbolic link" : strerror(errno));
    }
    if (exists && S_ISDIR(st.st_mode)) {
        rc = cli_fail(cmd, "%s %s: Is a directory", opt, path);
    } else if (exists && !S_ISREG(st.st_mode)) {
        if (access(target, W_OK) != 0)
            rc = cli_fail(cmd, "%s %s: %s", opt, path, strerror(errno));
    } else {
        char *dir = dir_of(target);
        struct stat ds;
        if (!dir)
            rc = cli_fail(cmd, "out of memory");
        else if (stat(dir, &ds) != 0)
            rc = cli_fail(cmd, "%s %s: folder %s: %s", opt, path, dir, strerror(errno));
        else if (!S_ISDIR(ds.st_mode))
            rc = cli_fail(cmd, "%s %s: %s is not a folder", opt, path, dir);
        else if (access(dir, W_OK | X_OK) != 0)
            rc = cli_fail(cmd, "%s %s: folder %s: %s", opt, path, dir, strerror(errno));
        else if (exists && access(target, W_OK) != 0)
            rc = cli_fail(cmd, "%s %s: %s", opt, path, strerror(errno));
        free(dir);
    }
    free(target);
    return rc;
}

/* The mode the output would have had: the old file's, else 0666 & ~umask. */
static mode_t target_mode(int exists, const struct stat *st)
{
    if (exists)
        return st->st_mode & 07777;
    mode_t um = umask(0);
    umask(um);
    return 0666 & ~um;
}

cli_out *cli_out_open(const char *cmd, const char *path)
{
    cli_out *o = calloc(1, sizeof *o);
    struct stat st;
    int exists = 0;
    if (!o) {
        cli_fail(cmd, "out of memory");
        return NULL;
    }
    o->cmd = cmd;
    o->path = path;
    o->k.fd = -1;
    if (!(o->target = resolve_target(path, &st, &exists))) {
        if (errno == ENOMEM)
            cli_fail(cmd, "out of memory");
        else
            cli_fail(cmd, "%s: %s", path,
                     errno == ENOENT ? "dangling symbolic link" : strerror(errno));
        goto fail;
    }
    if (exists && S_ISDIR(st.st_mode)) {
        cli_fail(cmd, "%s: Is a directory", path);
        goto fail;
    }
    if (exists && !S_ISREG(st.st_mode)) {
        /* a device or FIFO (/dev/null, /dev/stdout, a pipe): written in place, since
         * renaming over it would replace the node itself */
        o->k.fd = open(o->target, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (o->k.fd < 0) {
            cli_fail(cmd, "%s: %s", path,
                     errno == ENXIO ? "a FIFO with no reader" : strerror(errno));
            goto fail;
        }
        int fl = fcntl(o->k.fd, F_GETFL);
        if (fl >= 0)
            fcntl(o->k.fd, F_SETFL, fl & ~O_NONBLOCK);
    } else {
        char *dir = dir_of(o->target);
        const char *base = strrchr(o->target, '/');
        base = base ? base + 1 : o->target;
        size_t n = dir ? strlen(dir) + strlen(base) + 16 : 0;
        if (!dir || !(o->tmp = malloc(n))) {
            free(dir);
            cli_fail(cmd, "out of memory");
            goto fail;
        }
        snprintf(o->tmp, n, "%s/.%s.XXXXXX", dir, base);
        free(dir);
        o->k.fd = mkostemp(o->tmp, O_CLOEXEC);
        if (o->k.fd < 0) {
            cli_fail(cmd, "%s: cannot create a temporary file next to it: %s", path,
                     strerror(errno));
            free(o->tmp);
            o->tmp = NULL;
            goto fail;
        }
        fchmod(o->k.fd, target_mode(exists, &st));
    }
    if (!(o->f = checked_stream(&o->k))) {
        cli_fail(cmd, "out of memory");
        goto fail;
    }
    return o;
fail:
    cli_out_discard(o);
    return NULL;
}

FILE *cli_out_file(cli_out *o)
{
    return o->f;
}

void cli_out_discard(cli_out *o)
{
    if (!o)
        return;
    if (o->f)
        fclose(o->f); /* our cookie: flushes into the temp file at worst */
    if (o->k.fd >= 0)
        close(o->k.fd);
    if (o->tmp)
        unlink(o->tmp); /* only ever the file mkostemp created */
    free(o->tmp);
    free(o->target);
    free(o);
}

int cli_out_close(cli_out *o)
{
    const char *cmd = o->cmd, *path = o->path;
    int e = 0;
    if (fflush(o->f) != 0 || ferror(o->f))
        e = o->k.err ? o->k.err : EIO;
    fclose(o->f);
    o->f = NULL;
    if (!e && o->tmp && fsync(o->k.fd) != 0)
        e = errno;
    if (close(o->k.fd) != 0 && !e && errno != EINTR)
        e = errno;
    o->k.fd = -1;
    if (!e && o->tmp && rename(o->tmp, o->target) != 0)
        e = errno;
    if (!e && o->tmp) {
        free(o->tmp); /* renamed: nothing to remove any more */
        o->tmp = NULL;
        char *dir = dir_of(o->target);
        int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (dfd >= 0) {
            fsync(dfd); /* make the rename durable; best effort */
            close(dfd);
        }
        free(dir);
    }
    cli_out_discard(o);
    if (e)
        return cli_fail(cmd, "%s: %s", path, strerror(e));
    return 0;
}

int cli_out_write_all(const char *cmd, const char *path, const void *data, size_t n)
{
    cli_out *o = cli_out_open(cmd, path);
    if (!o)
        return 1;
    if (n)
        fwrite(data, 1, n, o->f);
    return cli_out_close(o);
}

/* ------------------------------------------------------------------ inputs are not outputs */

static int same_file(const char *a, const char *b)
{
    if (!strcmp(a, b))
        return 1;
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino && (S_ISREG(sa.st_mode) || S_ISDIR(sa.st_mode));
}

int cli_check_paths(const char *cmd, const cli_path *outs, int n_outs, const cli_path *ins,
                    int n_ins)
{
    for (int i = 0; i < n_outs; i++) {
        if (!outs[i].path)
            continue;
        for (int j = 0; j < n_ins; j++)
            if (ins[j].path && same_file(outs[i].path, ins[j].path))
                return cli_fail(cmd, "%s %s is the same file as the input %s%s%s: refusing to "
                                     "overwrite an input",
                                outs[i].opt, outs[i].path, ins[j].opt, ins[j].opt[0] ? " " : "",
                                ins[j].path),
                       2;
        for (int j = 0; j < i; j++)
            if (outs[j].path && same_file(outs[i].path, outs[j].path))
                return cli_fail(cmd, "%s and %s name the same file %s", outs[j].opt,
                                outs[i].opt, outs[i].path),
                       2;
    }
    for (int i = 0; i < n_outs; i++)
        if (outs[i].path && cli_out_check(cmd, outs[i].opt, outs[i].path))
            return 1;
    return 0;
}

int cli_check_paths_list(const char *cmd, const cli_path *outs, int n_outs, const char *what,
                         char *const *paths, size_t n)
{
    for (int i = 0; i < n_outs; i++) {
        struct stat so;
        if (!outs[i].path)
            continue;
        int exists = stat(outs[i].path, &so) == 0;
        for (size_t j = 0; j < n; j++) {
            struct stat si;
            if (!strcmp(outs[i].path, paths[j]) ||
                (exists && stat(paths[j], &si) == 0 && si.st_dev == so.st_dev &&
                 si.st_ino == so.st_ino))
                return cli_fail(cmd, "%s %s is the same file as the %s %s: refusing to "
                                     "overwrite an input",
                                outs[i].opt, outs[i].path, what, paths[j]),
                       2;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ files a library writes */

int cli_out_save_with(const char *cmd, const char *path,
                      int (*save)(const char *tmp, void *arg), void *arg)
{
    struct stat st;
    int exists, rc = 1;
    char *target = resolve_target(path, &st, &exists), *tmp = NULL;
    if (!target) {
        if (errno == ENOMEM)
            return cli_fail(cmd, "out of memory");
        return cli_fail(cmd, "%s: %s", path,
                        errno == ENOENT ? "dangling symbolic link" : strerror(errno));
    }
    if (exists && S_ISDIR(st.st_mode)) {
        free(target);
        return cli_fail(cmd, "%s: Is a directory", path);
    }
    int in_place = exists && !S_ISREG(st.st_mode); /* a device or FIFO: copied into */
    const char *tmpdir = getenv("TMPDIR");
    char *dir = in_place ? strdup(tmpdir && *tmpdir ? tmpdir : "/tmp") : dir_of(target);
    const char *base = strrchr(target, '/');
    base = base ? base + 1 : target;
    size_t n = dir ? strlen(dir) + strlen(base) + 16 : 0;
    if (!dir || !(tmp = malloc(n))) {
        free(dir);
        free(target);
        return cli_fail(cmd, "out of memory");
    }
    snprintf(tmp, n, "%s/.%s.XXXXXX", dir, base);
    free(dir);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = cli_fail(cmd, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(tmp);
        free(target);
        return rc;
    }
    close(fd);
    if (save(tmp, arg) != 0) /* the callee printed why */
        goto out;
    if (in_place) {
        size_t len;
        char *data = cli_read_file_capped(cmd, tmp, (size_t)1 << 40, 0, &len);
        if (data) {
            rc = cli_out_write_all(cmd, path, data, len);
            free(data);
        }
        goto out;
    }
    const mode_t mode = target_mode(exists, &st);
    int e = 0;
    fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        e = errno;
    if (fd >= 0) {
        fchmod(fd, mode);
        close(fd);
    }
    if (!e && rename(tmp, target) != 0)
        e = errno;
    if (e) {
        rc = cli_fail(cmd, "%s: %s", path, strerror(e));
        goto out;
    }
    rc = 0;
out:
    if (rc)
        unlink(tmp); /* ours (mkostemp); gone already if the callee removed it */
    else if (in_place)
        unlink(tmp);
    free(tmp);
    free(target);
    return rc;
}
