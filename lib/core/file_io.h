/* Bounded, non-blocking input files and atomic checked outputs (lib/core/file_io.c).
 * Private to lib/. */
#ifndef CLIPN_CORE_FILE_IO_H
#define CLIPN_CORE_FILE_IO_H

#include "clipn.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* ---- files (lib/core/file_io.c) */

/* Opens `path` for reading without blocking (O_NONBLOCK | O_CLOEXEC), and refuses it unless
 * fstat says it is a regular file of at most max_bytes (CLIPN_E_IO / CLIPN_E_LIMIT).
 * st (may be NULL) receives that fstat. */
clipn_status clipn_open_input(const char *path, uint64_t max_bytes, int *fd, uint64_t *size,
                              struct stat *st, clipn_error *err);
/* The whole file (checked as above) in a malloc'd buffer with a NUL after the last byte. */
clipn_status clipn_read_file(const char *path, uint64_t max_bytes, uint8_t **data, size_t *len,
                             clipn_error *err);

/* An output written to a fresh temporary file in the target's folder and renamed over the
 * target by clipn_output_commit only when every write, the fsync and the close succeeded.
 * On failure (or clipn_output_abort) the temporary file is removed and the target is
 * untouched. A target that exists and is not a regular file is refused; a symlink to one
 * is followed. Writes are checked; the first error is kept and reported by commit. */
typedef struct clipn_output {
    const char *path;                          /* as given, for messages */
    char *target, *tmp;
    int fd;
    int error;                                 /* errno of the first failed write */
} clipn_output;
clipn_status clipn_output_begin(clipn_output *o, const char *path, clipn_error *err);
void clipn_output_write(clipn_output *o, const void *data, size_t n);
clipn_status clipn_output_commit(clipn_output *o, clipn_error *err);
void clipn_output_abort(clipn_output *o);

#endif
