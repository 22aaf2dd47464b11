/* cJSON parsing behind one lock. Every cJSON_Parse* call writes cJSON's global error
 * position (cJSON.c: `global_error.json = NULL` on entry, the failure point on exit), even
 * when return_parse_end is given, so two threads loading models at once would race on it.
 * Headers are parsed once per load, so serialising them costs nothing measurable. */
#include "internal.h"

#include <cjson/cJSON.h>
#include <pthread.h>

static pthread_mutex_t json_lock = PTHREAD_MUTEX_INITIALIZER;

cJSON *clipn_json_parse(const char *text, size_t len, const char **end, int require_nul)
{
    pthread_mutex_lock(&json_lock);
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, end, require_nul);
    pthread_mutex_unlock(&json_lock);
    return root;
}
