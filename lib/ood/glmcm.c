/* The local half of GL-MCM (official AtsuMiyai/GL-MCM utils/detection_util.py, 'GL-MCM'):
 * L-MCM = max over patches p and classes c of softmax_c(cos(local_p, yes_c) / T), T = 1.
 * GL-MCM = MCM + lambda * L-MCM with lambda = 1 (lib/ood/scoring.c adds the MCM). */
#include "internal.h"

#include <math.h>

clipn_status clipn_glmcm_local(const clipn_heads *heads, const float *local, int n_local,
                               float *scratch, double *out, clipn_error *err)
{
    const int C = heads->n_classes, D = heads->dim;
    float *unit = scratch, *cos = scratch + (size_t)n_local * D;
    for (int p = 0; p < n_local; p++) { /* F.normalize with the norm in double */
        const float *l = local + (size_t)p * D;
        double ss = 0.0;
        for (int i = 0; i < D; i++)
            ss += (double)l[i] * l[i];
        double norm = sqrt(ss);
        if (!isfinite(norm))
            return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_score_image: local feature %d "
                              "is not finite", p);
        if (norm < 1e-12)
            norm = 1e-12;
        for (int i = 0; i < D; i++)
            unit[(size_t)p * D + i] = (float)(l[i] / norm);
    }
    /* all patches x all classes in one float32 GEMM (the heads as a [C, D] layer) */
    const clipn_linear yes = {.n_out = C, .n_in = D, .weight = heads->yes};
    clipn_linear_forward(&yes, unit, n_local, cos, CLIPN_EPI_NONE);
    double best = 0.0;
    for (int p = 0; p < n_local; p++) {
        const float *row = cos + (size_t)p * C;
        float m = row[0];
        for (int c = 1; c < C; c++)
            if (row[c] > m)
                m = row[c];
        double sum = 0.0;
        for (int c = 0; c < C; c++)
            sum += exp((double)row[c] - m);
        if (1.0 / sum > best)
            best = 1.0 / sum;
    }
    *out = best;
    return CLIPN_OK;
}
