/* GL-MCM and NegLabel scores (lib/ood/glmcm.c, lib/ood/neglabel.c). Private to lib/. */
#ifndef CLIPN_OOD_OOD_H
#define CLIPN_OOD_OOD_H

#include "clipn.h"

/* ---- GL-MCM and NegLabel (lib/ood/glmcm.c, lib/ood/neglabel.c) */
/* max over patches of max_c softmax_c(cos(local_p, yes_c) / T), T = 1. scratch: n_local *
 * (dim + n_classes) floats (the caller's; clipn_score_image takes its thread's). */
clipn_status clipn_glmcm_local(const clipn_heads *heads, const float *local, int n_local,
                               float *scratch, double *out, clipn_error *err);
/* The grouped NegLabel score from the ID logits (100 cos, max max_logit) and the feature
 * (scale = 100 / |feature|). scratch: n_neg + neg_groups doubles. */
clipn_status clipn_neglabel_score(const clipn_heads *heads, const float *feature,
                                  const double *logits, double max_logit, double scale,
                                  double *scratch, double *out, clipn_error *err);
void clipn_heads_free_negatives(clipn_heads *heads);

#endif
