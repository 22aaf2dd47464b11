/* STUB: replaced by the image pipeline work (issue 4). */
#include "internal.h"
void clipn_image_opts_default(clipn_image_opts *o) { o->image_size = 224; o->mean[0] = 0.48145466f; o->mean[1] = 0.4578275f; o->mean[2] = 0.40821073f; o->std[0] = 0.26862954f; o->std[1] = 0.26130258f; o->std[2] = 0.27577711f; o->max_pixels = CLIPN_DEFAULT_MAX_PIXELS; }
void clipn_image_opts_from_model(const clipn_model *m, clipn_image_opts *o) { clipn_image_opts_default(o); o->image_size = m->config.image_size; for (int i = 0; i < 3; i++) { o->mean[i] = m->config.image_mean[i]; o->std[i] = m->config.image_std[i]; } }
clipn_status clipn_preprocess_file(const char *p, const clipn_image_opts *o, float *out, clipn_error *e) { (void)p; (void)o; (void)out; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "images not implemented"); }
clipn_status clipn_preprocess_memory(const void *d, size_t l, const clipn_image_opts *o, float *out, clipn_error *e) { (void)d; (void)l; (void)o; (void)out; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "images not implemented"); }
clipn_status clipn_preprocess_pixels(const uint8_t *px, int w, int h, int c, size_t s, const clipn_image_opts *o, float *out, clipn_error *e) { (void)px; (void)w; (void)h; (void)c; (void)s; (void)o; (void)out; return clipn_fail(e, CLIPN_E_UNSUPPORTED, "images not implemented"); }
