/* libFuzzer: the head-file reader (safetensors header, metadata, class-name list,
 * tensor bounds and overlap, float values). */
#include "clipn.h"
#include "fuzz_util.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(data, size);
    clipn_heads *h = NULL;
    clipn_error err;
    if (clipn_heads_load(path, NULL, &h, &err) != CLIPN_OK) {
        if (h)
            abort();
        return 0;
    }
    volatile float sum = 0;
    for (size_t i = 0; i < (size_t)h->n_classes * (size_t)h->dim; i++)
        sum += h->yes[i] + (h->no ? h->no[i] : 0.0f);
    for (int c = 0; c < h->n_classes; c++)
        sum += (float)strlen(h->class_names[c]);
    (void)sum;
    clipn_heads_free(h);
    return 0;
}
