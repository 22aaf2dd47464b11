/* The official CLIPN templates (128 lines), embedded so the CLI needs no data files. */
#ifndef CLIPN_OFFICIAL_TEMPLATES_H
#define CLIPN_OFFICIAL_TEMPLATES_H
extern const char *const clipn_official_templates[];
extern const int clipn_n_official_templates;
#endif
