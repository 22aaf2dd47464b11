/* Errors: setting a clipn_error (lib/core/error.c). Private to lib/. */
#ifndef CLIPN_CORE_ERROR_H
#define CLIPN_CORE_ERROR_H

#include "clipn.h"

/* ---- errors (lib/core/error.c) */

/* Sets err (if not NULL) and returns code, so callers can `return clipn_fail(...)`. */
clipn_status clipn_fail(clipn_error *err, clipn_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void clipn_clear_error(clipn_error *err);

#endif
