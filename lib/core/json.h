/* JSON parsing under one lock, and strict bounded parsing of JSON a file supplies
 * (lib/core/json.c). Private to lib/. */
#ifndef CLIPN_CORE_JSON_H
#define CLIPN_CORE_JSON_H

#include "clipn.h"
#include <stddef.h>

/* ---- JSON (lib/core/json.c): cJSON_ParseWithLengthOpts under a process-wide lock, because
   every cJSON parse writes cJSON's global error position. Use it for all parsing. */
struct cJSON;
struct cJSON *clipn_json_parse(const char *text, size_t len, const char **end, int require_nul);

/* Strict parsing of JSON a file supplies, with its cost bounded before cJSON allocates:
 * nesting depth, and the values cJSON would build (counted in one pass over the text) at
 * most max_values + values_per_root_member * (members of the root object), with at most
 * max_root_members of those (0 = any). Then: no NUL byte, nothing but whitespace after the
 * value, and no key twice in any object. `what` starts each message ("x.safetensors:
 * header"). text need not be NUL-terminated. */
typedef struct clipn_json_limits {
    int max_depth;
    size_t max_values, values_per_root_member, max_root_members;
} clipn_json_limits;
clipn_status clipn_json_parse_strict(const char *text, size_t len, const clipn_json_limits *lim,
                                     const char *what, struct cJSON **out, clipn_error *err);

#endif
