/* The map steps of the CLI (encode images, build class heads, encode texts) behind one
 * table of functions, so that clipn-mpi (examples/mpi) can run them across ranks while the
 * subcommands stay as they are. The default, cli_backend_local, runs them in this process.
 * Every implementation returns exactly what the local one returns, in input order. */
#ifndef CLIPN_CLI_BACKEND_H
#define CLIPN_CLI_BACKEND_H

#include "cli.h"

/* What is computed per image. An implementation looks the encoder up by its index (so a
 * remote rank can run the same one): add new per-image work (e.g. local features) here. */
typedef struct cli_image_encoder {
    const char *name;
    size_t (*out_floats)(const clipn_model *model); /* floats per image */
    clipn_status (*encode)(clipn_ctx *ctx, const float *pixels, int n, float *out,
                           clipn_error *err);
} cli_image_encoder;

enum {
    CLI_ENC_FEATURE = 0, /* clipn_encode_image: the raw feature, [embed_dim] */
    CLI_ENC_LOCAL = 1,   /* clipn_encode_image_local: [embed_dim] global, then the
                            GL-MCM local features [patches, embed_dim] */
    CLI_N_ENCODERS
};
extern const cli_image_encoder cli_image_encoders[CLI_N_ENCODERS];

/* One image's result, delivered once per image in input order: out holds out_floats values,
 * or out is NULL and error is the message naming the file (what clipn prints after
 * "clipn <cmd>: "). Return non-zero to stop (the caller has printed why). */
typedef int (*cli_image_fn)(void *user, size_t i, const float *out, const char *error);

typedef struct cli_image_job {
    const char *cmd;
    const clipn_model *model;
    clipn_ctx *ctx;        /* made with max_batch >= batch */
    char *const *paths;
    size_t n;
    int batch;             /* images per encoder call */
    int encoder;           /* CLI_ENC_* */
    cli_image_fn on_image;
    void *user;
} cli_image_job;

typedef struct cli_backend {
    /* Read, preprocess and encode job->paths (an unreadable image is reported to on_image,
     * not printed). Returns 0, or 1 when the encoder failed (printed: "encoding images:
     * ...") or on_image asked to stop. */
    int (*encode_images)(const cli_image_job *job);
    /* clipn_heads_build's contract (class_names are left NULL). */
    clipn_status (*build_heads)(clipn_ctx *ctx, const char *const *classes, int n_classes,
                                const char *const *templates, int n_templates,
                                const char *const *no_templates, int n_no_templates,
                                clipn_progress_fn progress, void *user, clipn_heads **out,
                                clipn_error *err);
    /* Tokenize texts[0..n) with tok and encode them with the yes tower (no_tower 0) or the
     * no tower into out [n, embed_dim]; the first text that fails stops it. */
    clipn_status (*encode_texts)(const clipn_model *model, clipn_ctx *ctx, clipn_tokenizer *tok,
                                 int no_tower, char *const *texts, int n, float *out,
                                 clipn_error *err);
} cli_backend;

extern const cli_backend cli_backend_local;
/* What the subcommands call; clipn-mpi points it elsewhere before running one. */
extern const cli_backend *cli_backend_active;
/* The last model cli_load_model opened, and its path (remote ranks load the same file). */
extern const char *cli_backend_model_path;
extern const clipn_model *cli_backend_model;

/* The local implementations, also what each remote rank runs on its share. */
int cli_encode_images_local(const cli_image_job *job);
clipn_status cli_encode_texts_local(const clipn_model *model, clipn_ctx *ctx,
                                    clipn_tokenizer *tok, int no_tower,
                                    char *const *texts, int n, float *out, clipn_error *err);

#endif
