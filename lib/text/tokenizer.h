/* Tokenizer internals for lib/, tests and the CLI (lib/text/tokenizer.c). */
#ifndef CLIPN_TEXT_TOKENIZER_H
#define CLIPN_TEXT_TOKENIZER_H

#include "clipn.h"
#include <stddef.h>

/* ---- tokenizer internals, for tests and the CLI (lib/text/tokenizer.c) */
/* Merges the tokenizer reads (the official merges[1:49152-256-2+1]); more are ignored, as
 * the official code does with the vocab file, so a model file with more is refused. */
#define CLIPN_TOK_MAX_MERGES (49152 - 256 - 2)
clipn_status clipn_tokenizer_from_merges(const char *merges, size_t len,
                                         clipn_tokenizer **out, clipn_error *err);

#endif
