/*
 * libclipn: CLIPN ("CLIP saying no", ICCV 2023) zero-shot out-of-distribution detection in C.
 *
 * This header is the whole public API.
 *
 * Conventions
 * - Every fallible function returns a clipn_status and, when `err` is not NULL, fills it
 *   with the same code and a one-line message naming the file, tensor or field at fault.
 *   The library never prints, never exits, never aborts.
 * - A clipn_model is immutable after clipn_model_load and may be shared by any number of
 *   threads. Scratch memory lives in a clipn_ctx (one per thread), allocated once.
 * - Features returned by the encoders are raw (not L2-normalised), as the official code.
 * - Arrays are row-major float32 unless said otherwise.
 */
#ifndef CLIPN_H
#define CLIPN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the functions libclipn.so exports. The library is built with -fvisibility=hidden,
 * so everything else stays internal (tests/check_exports.sh checks the two lists agree). */
#if defined(__GNUC__)
#define CLIPN_API __attribute__((visibility("default")))
#else
#define CLIPN_API
#endif

#define CLIPN_VERSION_STRING "0.1.0"
#define CLIPN_FORMAT_VERSION 1

/* ------------------------------------------------------------------------- errors */

typedef enum clipn_status {
    CLIPN_OK = 0,
    CLIPN_E_INVALID_ARG = 1, /* caller passed something impossible (NULL, n < 0, ...) */
    CLIPN_E_IO = 2,          /* open/read/mmap failed */
    CLIPN_E_FORMAT = 3,      /* file is malformed, truncated or inconsistent */
    CLIPN_E_UNSUPPORTED = 4, /* valid but not handled (unknown dtype, image type ...) */
    CLIPN_E_LIMIT = 5,       /* input exceeds a configured resource limit */
    CLIPN_E_NOMEM = 6,       /* allocation failed */
    CLIPN_E_CANCELLED = 7,   /* a progress callback asked to stop */
    CLIPN_E_INTERNAL = 8
} clipn_status;

typedef struct clipn_error {
    clipn_status code;
    char message[512];
} clipn_error;

/* Static name of a status ("CLIPN_E_FORMAT", ...). */
CLIPN_API const char *clipn_status_name(clipn_status s);

/* ------------------------------------------------------------------------- model */

typedef enum clipn_activation {
    CLIPN_ACT_GELU = 0,      /* exact erf GELU (nn.GELU) */
    CLIPN_ACT_QUICKGELU = 1  /* x * sigmoid(1.702 x) */
} clipn_activation;

typedef enum clipn_pooling {
    CLIPN_POOL_ARGMAX = 0    /* text row at argmax(token ids): first position of the largest id */
} clipn_pooling;

typedef struct clipn_config {
    int format_version;
    int embed_dim;
    /* image tower */
    int image_size, patch_size;
    int vision_width, vision_layers, vision_heads, vision_mlp_width;
    /* text towers (the no tower has the same shapes) */
    int context_length, vocab_size;
    int text_width, text_layers, text_heads, text_mlp_width;
    clipn_activation activation;
    float ln_eps;
    int pad_id, sot_id, eot_id;
    clipn_pooling pooling;
    int has_no_tower;        /* token_embedding_no, transformer_no.*, ... present */
    int has_prompt_no;       /* prompt_no [n_prompt_no, context_length, text_width] present */
    int n_prompt_no;
    float image_mean[3], image_std[3];
    float logit_scale;       /* exp(logit_scale) from the checkpoint; scoring uses 100 */
} clipn_config;

typedef struct clipn_model clipn_model;

/* The precision the linear layers (attention projections, MLPs, patch embedding, final
 * projections: all but a few per cent of the work) run at. LayerNorm, softmax, GELU and
 * the residual stream stay fp32 in every precision. See docs/performance.md. */
typedef enum clipn_precision {
    CLIPN_PRECISION_DEFAULT = 0, /* the file's own: INT8 for an int8 file, BF16 for a BF16
                                    one, else fp32. The environment variable CLIPN_WEIGHTS=
                                    fp32|bf16|int8, when set, is the default instead (for
                                    benchmarks). */
    CLIPN_PRECISION_FP32 = 1,    /* features within ~1e-6 of PyTorch fp32 */
    CLIPN_PRECISION_BF16 = 2,    /* bf16 weights and activations, fp32 sums; needs
                                    AVX512_BF16, elsewhere runs fp32 (with a note) */
    CLIPN_PRECISION_INT8 = 3     /* int8 weights (quantized at load, or stored so by the
                                    converter) and activations (quantized per call), one
                                    scale per 64 k, int32 sums; every CPU */
} clipn_precision;

typedef struct clipn_load_opts {
    uint64_t max_header_bytes;  /* 0 = default (100 MiB) */
    uint64_t max_tensors;       /* 0 = default (100000) */
    clipn_precision precision;  /* 0 = the file's own */
} clipn_load_opts;

/* Load a libclipn model file (safetensors, see docs/model-format.md). The file is
 * memory-mapped; on any fault nothing is returned and *out stays NULL. opts may be NULL.
 * Refused: anything but a regular file, a header with a key twice or more JSON values than
 * its entries need, a NaN or infinite weight (the message names the tensor), image_std
 * below 1e-6, and merges the tokenizer cannot read or whose ids are not the config's.
 * A precision this CPU cannot run (BF16 without AVX512_BF16) loads at fp32 instead: see
 * clipn_model_precision and clipn_model_precision_note. */
CLIPN_API clipn_status clipn_model_load(const char *path, const clipn_load_opts *opts,
                              clipn_model **out, clipn_error *err);
CLIPN_API void clipn_model_free(clipn_model *model);
CLIPN_API const clipn_config *clipn_model_config(const clipn_model *model);
/* The precision the model runs at (never CLIPN_PRECISION_DEFAULT). */
CLIPN_API clipn_precision clipn_model_precision(const clipn_model *model);
/* What was asked and why something else runs, e.g. "bf16 asked: this CPU has no
 * AVX512_BF16; running fp32", or "" when what was asked runs. Static per model. */
CLIPN_API const char *clipn_model_precision_note(const clipn_model *model);
/* "fp32", "bf16", "int8" ("default" for 0, NULL for anything else). */
CLIPN_API const char *clipn_precision_name(clipn_precision p);
/* The kernels this process runs (chosen once by CPUID, or CLIPN_ISA): "avx512", "avx2",
 * "neon" or "portable"; and the INT8 micro-kernel a model at INT8 runs under it (int8
 * weights x int16 activations): "avx2 w8a16" (also on AVX-512 CPUs), "neon w8a16" or
 * "portable w8a16", followed in parentheses by the W8A8 kernel where there is one. */
CLIPN_API const char *clipn_runtime_isa(void);
CLIPN_API const char *clipn_runtime_int8_kernel(void);
/* Write the config as a JSON object (NUL-terminated). Returns the length it needs
 * (excluding NUL), like snprintf; or 0 when formatting failed (the C library's printf can
 * run out of memory), and then buf holds "": a text with a piece missing is never
 * returned. A config always formats to a non-empty text, so 0 means failure. */
CLIPN_API size_t clipn_config_to_json(const clipn_config *cfg, char *buf, size_t cap);

/* ------------------------------------------------------------------------- tokenizer */

/* A tokenizer keeps a cache of merged words, so it is NOT thread-safe: one per thread. */
typedef struct clipn_tokenizer clipn_tokenizer;

/* From the BPE merges embedded in the model file. */
CLIPN_API clipn_status clipn_tokenizer_from_model(const clipn_model *model, clipn_tokenizer **out,
                                        clipn_error *err);
/* From the official vocab file (bpe_simple_vocab_16e6.txt, plain or .gz): a regular file
 * of at most 64 MiB, 64 MiB once decompressed. */
CLIPN_API clipn_status clipn_tokenizer_from_file(const char *path, clipn_tokenizer **out, clipn_error *err);
CLIPN_API void clipn_tokenizer_free(clipn_tokenizer *tok);

#define CLIPN_DEFAULT_MAX_TEXT_BYTES (1u << 20)

/* Tokenize UTF-8 text (len bytes, need not be NUL-terminated; invalid UTF-8 is decoded as
 * Python's errors='replace') to exactly context_length ids: <start_of_text> tokens
 * <end_of_text>, cut to context_length with <end_of_text> kept last, padded with 0.
 * Input longer than CLIPN_DEFAULT_MAX_TEXT_BYTES is refused with CLIPN_E_LIMIT. */
CLIPN_API clipn_status clipn_tokenize(clipn_tokenizer *tok, const char *text, size_t len,
                            int32_t *ids, int context_length, clipn_error *err);

/* ------------------------------------------------------------------------- images */

typedef struct clipn_image_opts {
    int image_size;             /* output is [3, image_size, image_size] */
    float mean[3], std[3];
    uint64_t max_pixels;        /* refuse images with more pixels (checked before decoding);
                                   0 = CLIPN_DEFAULT_MAX_PIXELS */
} clipn_image_opts;

#define CLIPN_DEFAULT_MAX_PIXELS 178956970ull /* PIL's decompression-bomb error threshold */

/* 224, OpenAI mean/std, CLIPN_DEFAULT_MAX_PIXELS. */
CLIPN_API void clipn_image_opts_default(clipn_image_opts *opts);
/* image_size, mean and std from the model's config; default limit. */
CLIPN_API void clipn_image_opts_from_model(const clipn_model *model, clipn_image_opts *opts);

/* The official open_clip validation transform: PIL bicubic resize of the shorter side,
 * centre crop, RGB conversion, /255, normalise. `out` receives 3*S*S floats (CHW).
 * clipn_preprocess_file reads only a regular file of at most 1 GiB (a FIFO or a device is
 * refused with CLIPN_E_IO, without blocking). */
CLIPN_API clipn_status clipn_preprocess_file(const char *path, const clipn_image_opts *opts, float *out,
                                   clipn_error *err);
CLIPN_API clipn_status clipn_preprocess_memory(const void *data, size_t len, const clipn_image_opts *opts,
                                     float *out, clipn_error *err);
/* Pixels the caller holds: channels 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA), 8 bits,
 * rows `stride` bytes apart (0 = width*channels). */
CLIPN_API clipn_status clipn_preprocess_pixels(const uint8_t *pixels, int width, int height, int channels,
                                     size_t stride, const clipn_image_opts *opts, float *out,
                                     clipn_error *err);

/* ------------------------------------------------------------------------- inference */

typedef struct clipn_ctx clipn_ctx;

typedef struct clipn_ctx_opts {
    int max_batch;   /* images or prompts per forward pass (larger n runs in chunks); 0 = 8 */
    int threads;     /* threads this context's calls use, the calling one included;
                        0 = the process-wide count (all online cores) */
} clipn_ctx_opts;

/* A context holds the scratch memory for one thread. opts may be NULL.
 *
 * Memory: clipn_ctx_new allocates everything a forward pass of up to max_batch inputs
 * needs (scratch, the text row plan, the kernel thread pool's workers and their blocks);
 * after it, clipn_encode_image, clipn_encode_text and clipn_encode_no_text allocate
 * nothing, whatever n. clipn_encode_image_sized (at another size) and
 * clipn_encode_image_local allocate on their first call per context (per new size), then
 * nothing. clipn_score and clipn_score_image use a per-thread scratch block that grows on
 * a thread's first call (or for larger heads) and is freed when the thread exits. Building
 * heads and mining negatives allocate. One exception: the first model of a new weight
 * format (e.g. an INT8 model after fp32 ones) loaded after the pool's workers started
 * gets their per-thread blocks in its first encode. (tests/test_alloc.c counts it.)
 * Threads: opts->threads limits this context's calls and nothing else; contexts with
 * different counts can run at once. With CLIPN_GEMM=openblas, OpenBLAS's own threads keep
 * the process-wide count. */
CLIPN_API clipn_status clipn_ctx_new(const clipn_model *model, const clipn_ctx_opts *opts,
                           clipn_ctx **out, clipn_error *err);
CLIPN_API void clipn_ctx_free(clipn_ctx *ctx);
/* The model a context was made for. */
CLIPN_API const clipn_model *clipn_ctx_model(const clipn_ctx *ctx);

/* pixels: [n, 3, S, S] with S the config's image_size. out: [n, embed_dim]. */
CLIPN_API clipn_status clipn_encode_image(clipn_ctx *ctx, const float *pixels, int n, float *out,
                                clipn_error *err);
/* Same for another square input size (position embeddings interpolated bicubically, as the
 * official VisualTransformer does). size must be a multiple of patch_size. */
CLIPN_API clipn_status clipn_encode_image_sized(clipn_ctx *ctx, const float *pixels, int n, int size,
                                      float *out, clipn_error *err);
/* Global and local (patch) features, raw, as GL-MCM computes them (docs/methods.md):
 * global [n, embed_dim] equals clipn_encode_image's; local [n, patches, embed_dim] with
 * patches = (image_size / patch_size)^2 in row-major grid order, from the value path of
 * the last image block: with x its input, v = out_proj(V(ln_1(x))) + x,
 * v += mlp(ln_2(v)), local = ln_post(v) @ proj (V: the value third of in_proj). The last
 * block then runs out_proj + MLP on the class rows (global) and the patch rows (local), so
 * both cost about one clipn_encode_image plus the local projection (~0.5% on ViT-B-16).
 * Native image size only; scratch allocated on the first call, kept in the ctx. */
CLIPN_API clipn_status clipn_encode_image_local(clipn_ctx *ctx, const float *pixels, int n,
                                      float *global, float *local, clipn_error *err);
/* ids: [n, context_length] from clipn_tokenize. out: [n, embed_dim]. */
CLIPN_API clipn_status clipn_encode_text(clipn_ctx *ctx, const int32_t *ids, int n, float *out,
                               clipn_error *err);
/* The "no" tower (mean of prompt_no added when the model has it). */
CLIPN_API clipn_status clipn_encode_no_text(clipn_ctx *ctx, const int32_t *ids, int n, float *out,
                                  clipn_error *err);

/* ------------------------------------------------------------------------- class heads */

typedef struct clipn_heads {
    int n_classes;
    int dim;
    float *yes;   /* [n_classes, dim], L2-normalised */
    float *no;    /* [n_classes, dim], L2-normalised; NULL when the model has no no tower */
    char **class_names; /* [n_classes] or NULL; filled by clipn_heads_load, freed with heads */
    /* NegLabel negatives (clipn_heads_add_negatives); n_neg = 0 when there are none */
    int n_neg;
    int neg_groups;     /* groups the NegLabel score splits them into, 1..n_neg */
    float *neg;         /* [n_neg, dim], L2-normalised yes-tower features */
    char **neg_prompts; /* [n_neg] the prompts as encoded */
} clipn_heads;

/* Limits of clipn_heads_build (CLIPN_E_LIMIT beyond them). */
#define CLIPN_MAX_CLASSES 1000000
#define CLIPN_MAX_TEMPLATES 10000

/* Return non-zero to cancel. done/total count text encodes (prompts x towers). */
typedef int (*clipn_progress_fn)(void *user, size_t done, size_t total);

/* For each class c: yes_c = normalize(sum_t normalize(encode_text(t.format(c)))), no_c the
 * same with the no tower over no_templates (NULL = the same templates). A template holds
 * "{}" where the class name goes (Python str.format with one positional field). */
CLIPN_API clipn_status clipn_heads_build(clipn_ctx *ctx, const char *const *classes, int n_classes,
                               const char *const *templates, int n_templates,
                               const char *const *no_templates, int n_no_templates,
                               clipn_progress_fn progress, void *user, clipn_heads **out,
                               clipn_error *err);
CLIPN_API void clipn_heads_free(clipn_heads *heads);

/* The template tables shipped with CLIPN, embedded in the library (the same lines as
 * data/clipn_templates_official.txt and data/clipn_templates_no_handcrafted.txt, quote
 * marks kept as the official code formats the raw line). */
typedef enum clipn_template_set {
    CLIPN_TEMPLATES_OFFICIAL = 0,      /* the 128 official CLIPN templates (src/prompt/prompt.txt),
                                          used for both towers by the official evaluation */
    CLIPN_TEMPLATES_NO_HANDCRAFTED = 1 /* the 128 hand-crafted "no" templates ("a photo of no
                                          {}."): no_templates of the hand-crafted variant */
} clipn_template_set;
/* Sets *templates (when not NULL) to a static array that is never freed, and returns its
 * length; 0 and NULL for an unknown set. Pass the result straight to clipn_heads_build. */
CLIPN_API int clipn_official_templates(clipn_template_set which, const char *const **templates);

/* Python `tmpl.format(name)` with one positional argument: "{}", "{0}", "{!s}", "{0!s}",
 * "{{" and "}}". Anything Python would refuse (unbalanced braces, "{1}", "{}{}", mixed
 * numbering), and other fields or format specs, are refused with a message quoting the
 * template. *out is malloc'd and NUL-terminated. */
CLIPN_API clipn_status clipn_format_template(const char *tmpl, const char *name, char **out,
                                   clipn_error *err);

/* ------------------------------------------------------------------------- NegLabel */

#define CLIPN_NEG_DEFAULT_GROUPS 100
#define CLIPN_MAX_NEGATIVES 1000000

/* Encode each prompt as given through the yes tower, L2-normalise, and attach the result
 * to heads as NegLabel negatives (replacing any), split into `groups` groups by the score
 * (1..n; 0 = min(CLIPN_NEG_DEFAULT_GROUPS, n)). progress counts the prompts encoded. */
CLIPN_API clipn_status clipn_heads_add_negatives(clipn_ctx *ctx, clipn_heads *heads,
                                       const char *const *prompts, int n, int groups,
                                       clipn_progress_fn progress, void *user, clipn_error *err);

/* NegLabel mining (Jiang et al., ICLR 2024; docs/methods.md). Defaults as the official
 * ImageNet config: fraction 0.15, percentile 0.95, templates below. */
typedef struct clipn_neg_opts {
    double fraction;            /* keep the first int(fraction * n) of each part of speech */
    double percentile;          /* quantile of a candidate's cosines to the ID prompts */
    const char *id_template;    /* "the nice {}" */
    const char *noun_template;  /* "the nice {}" */
    const char *adj_template;   /* "This is a {} photo" */
} clipn_neg_opts;
CLIPN_API void clipn_neg_opts_default(clipn_neg_opts *opts);

/* The selected negative prompts: nouns first (n_nouns of them), then adjectives, each part
 * in ascending order of its quantile (ties by input order). */
typedef struct clipn_neg_labels {
    int n, n_nouns;
    char **prompts;     /* [n] formatted prompts, e.g. "the nice pyxidium" */
    float *quantile;    /* [n] the candidate's percentile cosine to the ID prompts */
} clipn_neg_labels;

/* ID prompts id_template.format(class) and every candidate prompt go through the yes
 * tower, L2-normalised; a candidate's score is the `percentile` quantile (linear
 * interpolation, as torch.quantile) of its cosines to the ID prompts. Candidates are used
 * as given (de-duplicate them first; clipn_wordnet_read does). progress counts text
 * encodes (ID prompts + candidates). opts may be NULL (defaults). */
CLIPN_API clipn_status clipn_neg_labels_mine(clipn_ctx *ctx, const char *const *classes, int n_classes,
                                   const char *const *nouns, int n_nouns,
                                   const char *const *adjectives, int n_adjectives,
                                   const clipn_neg_opts *opts, clipn_progress_fn progress,
                                   void *user, clipn_neg_labels **out, clipn_error *err);
CLIPN_API void clipn_neg_labels_free(clipn_neg_labels *labels);

/* Candidate words from a WordNet 3.0 database directory (NULL = Debian's wordnet-base,
 * /usr/share/wordnet): the first lemma of each synset of data.noun and data.adj whose
 * lexicographer file is NegLabel's (adj.all, adj.pert, adj.ppl; every noun file but
 * noun.animal and noun.food), lower-cased, '_' -> ' ', adjective markers such as "(a)"
 * removed, de-duplicated keeping the first (file order); a word that is also a noun is
 * kept as a noun only. */
typedef struct clipn_word_lists {
    int n_nouns, n_adjectives;
    char **nouns, **adjectives;
} clipn_word_lists;
#define CLIPN_WORDNET_DEFAULT_DIR "/usr/share/wordnet"
CLIPN_API clipn_status clipn_wordnet_read(const char *dir, clipn_word_lists **out, clipn_error *err);
CLIPN_API void clipn_word_lists_free(clipn_word_lists *lists);

/* ------------------------------------------------------------------------- head files */

/* 16 lowercase hex digits of FNV-1a 64 over the model's config JSON and its projection
 * matrices (visual.proj, text_projection, text_projection_no): cheap, and different for any
 * fine-tune of the same architecture. See docs/head-format.md. */
CLIPN_API clipn_status clipn_model_fingerprint(const clipn_model *model, char out[17], clipn_error *err);

/* Save heads as a small safetensors file (docs/head-format.md) recording the class names,
 * the templates (may be NULL/0 when unknown; no_templates NULL = same as templates) and
 * the fingerprint of `model`. The file is written beside `path` under a temporary name,
 * flushed to disk and renamed over `path` only when complete: on any failure what was at
 * `path` is untouched and nothing but the temporary file is removed. Refused: a path that
 * exists and is not a regular file (a symlink to one is followed), the file `model` was
 * loaded from, NULL class or template entries, and rows that are not finite unit vectors
 * (|norm - 1| > 1e-3). */
CLIPN_API clipn_status clipn_heads_save(const char *path, const clipn_model *model,
                              const clipn_heads *heads, const char *const *classes,
                              const char *const *templates, int n_templates,
                              const char *const *no_templates, int n_no_templates,
                              clipn_error *err);
/* Load heads (with class_names). When model is not NULL, a file built from another model
 * (fingerprint or embed_dim mismatch) is refused with CLIPN_E_INVALID_ARG. The file is
 * treated as hostile: it must be a regular file (never blocks on a FIFO), and every size,
 * offset, key and value is checked; rows must be finite unit vectors. */
CLIPN_API clipn_status clipn_heads_load(const char *path, const clipn_model *model, clipn_heads **out,
                              clipn_error *err);

/* ------------------------------------------------------------------------- scores */

#define CLIPN_LOGIT_SCALE 100.0f /* the official scoring's fixed scale */

typedef struct clipn_scores {
    int pred;          /* argmax_c logits_c */
    float ctw;         /* p_yes at pred (higher = more in-distribution) */
    float atd;         /* sum_c p_yes_c * p_c */
    float msp;         /* max_c softmax(logits) */
    float maxlogit;    /* max_c logits */
    float energy;      /* logsumexp_c logits */
    float mcm;         /* max_c softmax(cos / T), T = 1 */
    int ood_ctw;       /* p_no at pred > 0.5 */
    int ood_atd;       /* 1 - atd > max_c p_c * p_yes_c */
    float glmcm;       /* mcm + max_{patch, c} softmax(cos_local / T), T = 1, lambda = 1;
                          NaN without local features */
    float neglabel;    /* mean over groups of sum_c softmax([logits, group negatives])_c;
                          NaN when the heads carry no negatives */
} clipn_scores;

/* feature: one raw image feature [dim]. probs (optional, [n_classes]) gets softmax(logits).
 * Every score that needs nothing more is filled; glmcm is NaN (see clipn_score_image).
 * A score that cannot be computed is NaN (ctw/atd without no heads, neglabel without
 * negatives); test with isnan. */
CLIPN_API clipn_status clipn_score(const clipn_heads *heads, const float *feature, float *probs,
                         clipn_scores *out, clipn_error *err);
/* clipn_score plus glmcm from the image's local features (local [n_local, dim], raw, from
 * clipn_encode_image_local; NULL gives glmcm NaN as clipn_score). */
CLIPN_API clipn_status clipn_score_image(const clipn_heads *heads, const float *feature,
                               const float *local, int n_local, float *probs,
                               clipn_scores *out, clipn_error *err);

/* ------------------------------------------------------------------------- metrics */

typedef enum clipn_fpr95_mode {
    CLIPN_FPR95_INTERP = 0,  /* official CLIPN: interp1d(tpr, fpr)(0.95) on sklearn roc_curve */
    CLIPN_FPR95_NEAREST = 1  /* MCM (Outlier Exposure's fpr_and_fdr_at_recall): fpr at the
                                ROC threshold whose tpr is nearest 0.95 (docs/api.md) */
} clipn_fpr95_mode;

/* ID is the positive class; higher score = more ID. Both sets must be non-empty and finite
 * (CLIPN_E_INVALID_ARG otherwise). */
CLIPN_API clipn_status clipn_auroc(const float *id_scores, size_t n_id, const float *ood_scores,
                         size_t n_ood, double *auroc, clipn_error *err);
CLIPN_API clipn_status clipn_fpr95(const float *id_scores, size_t n_id, const float *ood_scores,
                         size_t n_ood, clipn_fpr95_mode mode, double *fpr, clipn_error *err);

/* The full ROC curve under the same conventions (sklearn's roc_curve with
 * drop_intermediate=False): point 0 is (0, 0) at threshold +inf, then one point per
 * distinct score value, descending, where fpr = OOD scores >= threshold / n_ood and
 * tpr = ID scores >= threshold / n_id. The arrays are allocated: clipn_roc_free. */
typedef struct clipn_roc {
    size_t n;          /* points */
    float *threshold;  /* [n], threshold[0] = +inf */
    double *fpr, *tpr; /* [n] */
} clipn_roc;
CLIPN_API clipn_status clipn_roc_curve(const float *id_scores, size_t n_id,
                                       const float *ood_scores, size_t n_ood, clipn_roc *out,
                                       clipn_error *err);
CLIPN_API void clipn_roc_free(clipn_roc *roc); /* NULL or zeroed: no-op */

#ifdef __cplusplus
}
#endif
#endif /* CLIPN_H */
