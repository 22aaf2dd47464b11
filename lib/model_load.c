/* STUB: replaced by the loader work (issue 2). */
#include "internal.h"
#include <stdlib.h>
clipn_status clipn_model_load(const char *path, const clipn_load_opts *opts, clipn_model **out, clipn_error *err)
{ (void)opts; if (out) *out = NULL; return clipn_fail(err, CLIPN_E_UNSUPPORTED, "%s: loader not implemented", path ? path : "(null)"); }
void clipn_model_free(clipn_model *m) { (void)m; }
const clipn_config *clipn_model_config(const clipn_model *m) { return m ? &m->config : NULL; }
size_t clipn_config_to_json(const clipn_config *c, char *b, size_t cap) { (void)c; if (cap) b[0] = 0; return 0; }
int clipn_model_own(clipn_model *m, void *p) { (void)m; (void)p; return -1; }
