/* STUB: replaced by the tokenizer work (issue 3). */
#include "internal.h"
clipn_status clipn_tokenizer_from_model(const clipn_model *m, clipn_tokenizer **o, clipn_error *e) { (void)m; *o = NULL; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "tokenizer not implemented"); }
clipn_status clipn_tokenizer_from_file(const char *p, clipn_tokenizer **o, clipn_error *e) { (void)p; *o = NULL; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "tokenizer not implemented"); }
clipn_status clipn_tokenizer_from_merges(const char *m, size_t l, clipn_tokenizer **o, clipn_error *e) { (void)m; (void)l; *o = NULL; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "tokenizer not implemented"); }
void clipn_tokenizer_free(clipn_tokenizer *t) { (void)t; }
clipn_status clipn_tokenize(clipn_tokenizer *t, const char *s, size_t l, int32_t *ids, int c, clipn_error *e) { (void)t; (void)s; (void)l; (void)ids; (void)c; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "tokenizer not implemented"); }
