/* libFuzzer: the model loader (safetensors header, config JSON, every tensor check), then
 * the tokenizer built from the embedded merges, on whatever it accepts. */
#include "clipn.h"
#include "fuzz_util.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(data, size);
    clipn_model *m = NULL;
    clipn_error err;
    /* Small limits so a declared-huge header is refused instead of read. */
    clipn_load_opts opts = {.max_header_bytes = 1 << 20, .max_tensors = 4096};
    if (clipn_model_load(path, &opts, &m, &err) != CLIPN_OK) {
        if (m || !memchr(err.message, '\0', sizeof err.message) || err.code == CLIPN_OK)
            abort(); /* the contract: NULL model, terminated message, non-OK code */
        return 0;
    }
    char json[2048];
    clipn_config_to_json(clipn_model_config(m), json, sizeof json);
    clipn_tokenizer *tok = NULL;
    if (clipn_tokenizer_from_model(m, &tok, &err) == CLIPN_OK) {
        const clipn_config *cfg = clipn_model_config(m);
        int32_t *ids = calloc((size_t)cfg->context_length, sizeof *ids);
        if (ids)
            clipn_tokenize(tok, "a photo of a cat.", 17, ids, cfg->context_length, &err);
        free(ids);
        clipn_tokenizer_free(tok);
    }
    clipn_model_free(m);
    return 0;
}
