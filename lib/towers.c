/* STUB: replaced by the towers work (issue 5). */
#include "internal.h"
clipn_status clipn_ctx_new(const clipn_model *m, const clipn_ctx_opts *o, clipn_ctx **out, clipn_error *e) { (void)m; (void)o; *out = NULL; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "not implemented"); }
void clipn_ctx_free(clipn_ctx *c) { (void)c; }
clipn_status clipn_encode_image(clipn_ctx *c, const float *p, int n, float *o, clipn_error *e) { (void)c; (void)p; (void)n; (void)o; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "not implemented"); }
clipn_status clipn_encode_image_sized(clipn_ctx *c, const float *p, int n, int s, float *o, clipn_error *e) { (void)c; (void)p; (void)n; (void)s; (void)o; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "not implemented"); }
clipn_status clipn_encode_text(clipn_ctx *c, const int32_t *i, int n, float *o, clipn_error *e) { (void)c; (void)i; (void)n; (void)o; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "not implemented"); }
clipn_status clipn_encode_no_text(clipn_ctx *c, const int32_t *i, int n, float *o, clipn_error *e) { (void)c; (void)i; (void)n; (void)o; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "not implemented"); }
