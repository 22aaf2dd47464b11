/* libFuzzer: clipn_tokenize (text cleaning: ftfy, HTML entities, whitespace; the BPE) with
 * the official vocabulary, built once. */
#include "clipn.h"

#include <stdio.h>
#include <stdlib.h>

static clipn_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    clipn_error err;
    if (clipn_tokenizer_from_file("weights_tools/bpe_simple_vocab_16e6.txt.gz", &tok, &err)) {
        fprintf(stderr, "fuzz_tokenize: run from the repo root: %s\n", err.message);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int32_t ids[77];
    clipn_error err;
    clipn_status st = clipn_tokenize(tok, (const char *)data, size, ids, 77, &err);
    if (st != CLIPN_OK)
        abort(); /* every input under 1 MiB is valid text (errors='replace') */
    if (ids[0] != 49406)
        abort();
    for (int i = 0; i < 77; i++)
        if (ids[i] < 0 || ids[i] >= 49408)
            abort();
    return 0;
}
