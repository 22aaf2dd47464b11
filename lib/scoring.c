/* STUB: replaced by the scoring work (issue 5). */
#include "internal.h"
clipn_status clipn_heads_build(clipn_ctx *c, const char *const *cl, int nc, const char *const *t, int nt, const char *const *nt2, int nnt, clipn_progress_fn p, void *u, clipn_heads **out, clipn_error *e) { (void)c; (void)cl; (void)nc; (void)t; (void)nt; (void)nt2; (void)nnt; (void)p; (void)u; *out = NULL; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "not implemented"); }
void clipn_heads_free(clipn_heads *h) { (void)h; }
clipn_status clipn_score(const clipn_heads *h, const float *f, float *p, clipn_scores *o, clipn_error *e) { (void)h; (void)f; (void)p; (void)o; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "not implemented"); }
clipn_status clipn_auroc(const float *a, size_t na, const float *b, size_t nb, double *r, clipn_error *e) { (void)a; (void)na; (void)b; (void)nb; (void)r; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "not implemented"); }
clipn_status clipn_fpr95(const float *a, size_t na, const float *b, size_t nb, clipn_fpr95_mode m, double *r, clipn_error *e) { (void)a; (void)na; (void)b; (void)nb; (void)m; (void)r; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "not implemented"); }
