/* Status codes and error messages. The library never prints: it fills clipn_error. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

const char *clipn_status_name(clipn_status s)
{
    switch (s) {
    case CLIPN_OK: return "CLIPN_OK";
    case CLIPN_E_INVALID_ARG: return "CLIPN_E_INVALID_ARG";
    case CLIPN_E_IO: return "CLIPN_E_IO";
    case CLIPN_E_FORMAT: return "CLIPN_E_FORMAT";
    case CLIPN_E_UNSUPPORTED: return "CLIPN_E_UNSUPPORTED";
    case CLIPN_E_LIMIT: return "CLIPN_E_LIMIT";
    case CLIPN_E_NOMEM: return "CLIPN_E_NOMEM";
    case CLIPN_E_CANCELLED: return "CLIPN_E_CANCELLED";
    case CLIPN_E_INTERNAL: return "CLIPN_E_INTERNAL";
    }
    return "CLIPN_E_UNKNOWN";
}

clipn_status clipn_fail(clipn_error *err, clipn_status code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

void clipn_clear_error(clipn_error *err)
{
    if (err) {
        err->code = CLIPN_OK;
        err->message[0] = '\0';
    }
}
