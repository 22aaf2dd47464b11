/* classify_one: the smallest complete libclipn program, public API only.
 *
 *     classify_one MODEL IMAGE [CLASS...]
 *
 * Builds CLIPN class heads for a few class names, encodes one image and prints the
 * predicted class with its CTW / ATD scores and whether CLIPN says "none of these"
 * (out-of-distribution). Build it against an installed libclipn with
 *     cc classify_one.c $(pkg-config --cflags --libs clipn)            (libclipn.so)
 *     cc classify_one.c $(pkg-config --cflags --libs --static clipn)   (libclipn.a) */
#include <clipn.h>

#include <stdio.h>
#include <stdlib.h>

static const char *const default_classes[] = {"cat", "dog", "car", "flower"};

static int fail(const char *what, const clipn_error *err)
{
    fprintf(stderr, "classify_one: %s: %s\n", what, err->message);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: classify_one MODEL IMAGE [CLASS...]\n");
        return 2;
    }
    const char *const *classes = default_classes;
    int n_classes = (int)(sizeof default_classes / sizeof *default_classes);
    if (argc > 3) {
        classes = (const char *const *)(argv + 3);
        n_classes = argc - 3;
    }
    /* the 128 official CLIPN templates, embedded in the library */
    const char *const *templates = NULL;
    const int n_templates = clipn_official_templates(CLIPN_TEMPLATES_OFFICIAL, &templates);

    clipn_error err;
    clipn_model *model = NULL;
    clipn_ctx *ctx = NULL;
    clipn_heads *heads = NULL;
    float *pixels = NULL, *feature = NULL, *probs = NULL;
    int rc = 1;

    if (clipn_model_load(argv[1], NULL, &model, &err) != CLIPN_OK)
        return fail("load", &err);
    const clipn_config *cfg = clipn_model_config(model);
    if (clipn_ctx_new(model, NULL, &ctx, &err) != CLIPN_OK) {
        rc = fail("context", &err);
        goto done;
    }
    /* the same templates for the yes and the no tower, as the official learnable-prompt run
       (the hand-crafted variant passes CLIPN_TEMPLATES_NO_HANDCRAFTED as no_templates) */
    if (clipn_heads_build(ctx, classes, n_classes, templates, n_templates, NULL, 0, NULL, NULL,
                          &heads, &err) != CLIPN_OK) {
        rc = fail("heads", &err);
        goto done;
    }

    clipn_image_opts opts;
    clipn_image_opts_from_model(model, &opts);
    pixels = malloc((size_t)3 * opts.image_size * opts.image_size * sizeof(float));
    feature = malloc((size_t)cfg->embed_dim * sizeof(float));
    probs = malloc((size_t)n_classes * sizeof(float));
    if (!pixels || !feature || !probs) {
        fprintf(stderr, "classify_one: out of memory\n");
        goto done;
    }
    if (clipn_preprocess_file(argv[2], &opts, pixels, &err) != CLIPN_OK) {
        rc = fail(argv[2], &err);
        goto done;
    }
    if (clipn_encode_image(ctx, pixels, 1, feature, &err) != CLIPN_OK) {
        rc = fail("encode", &err);
        goto done;
    }
    clipn_scores s;
    if (clipn_score(heads, feature, probs, &s, &err) != CLIPN_OK) {
        rc = fail("score", &err);
        goto done;
    }

    printf("%s: %s (p = %.3f)\n", argv[2], classes[s.pred], probs[s.pred]);
    printf("  CTW %.4f  ATD %.4f  MSP %.4f  MCM %.4f\n", s.ctw, s.atd, s.msp, s.mcm);
    /* the threshold-free decisions: "no" wins at the predicted class (CTW), or the
       extra "none of these" class wins (ATD) */
    printf("  verdict (CTW): %s\n", s.ood_ctw ? "out-of-distribution" : "in-distribution");
    printf("  verdict (ATD): %s\n", s.ood_atd ? "out-of-distribution" : "in-distribution");
    rc = 0;
done:
    free(pixels);
    free(feature);
    free(probs);
    clipn_heads_free(heads);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    return rc;
}
