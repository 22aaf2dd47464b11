/* A strict, read-only safetensors reader: mmap, header validation, tensor index.
 * Used by the model loader (lib/model/load.c) and the head files (lib/ood/head_file.c). */
#ifndef CLIPN_SAFETENSORS_H
#define CLIPN_SAFETENSORS_H

#include "internal.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define CLIPN_ST_MAX_DIMS 8

typedef enum clipn_st_dtype {
    CLIPN_ST_F32 = 0,
    CLIPN_ST_F16 = 1,
    CLIPN_ST_BF16 = 2,
    CLIPN_ST_U8 = 3,
    CLIPN_ST_I8 = 4  /* int8 linear weights, with a <name>_scale F32 tensor */
} clipn_st_dtype;

typedef struct clipn_st_tensor {
    const char *name;              /* points into the parsed header */
    clipn_st_dtype dtype;
    int ndim;
    uint64_t shape[CLIPN_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;           /* byte offsets in the data section */
    const uint8_t *data;           /* start of its bytes in the mapping or buffer */
    int used;                      /* set by the loader when a tensor is bound */
} clipn_st_tensor;

typedef struct clipn_st_file {
    const char *path;
    uint8_t *map;                  /* whole file, read-only; NULL once handed to a model */
    size_t map_len;
    uint64_t dev, ino;             /* fstat of the file */
    const uint8_t *data;           /* data section */
    uint64_t data_len;
    cJSON *header;                 /* parsed header (owns the tensor names) */
    const cJSON *metadata;         /* "__metadata__" object, or NULL when absent */
    clipn_st_tensor *tensors;      /* sorted by name */
    size_t n_tensors;
} clipn_st_file;

/* Map `path` and validate its structure: header length, JSON, every entry's dtype, shape
 * and data_offsets, no duplicates, no overlaps. On failure *f is left closed. */
clipn_status clipn_st_open(clipn_st_file *f, const char *path, uint64_t max_header_bytes,
                           uint64_t max_tensors, clipn_error *err);
/* The same for a file already in memory, buf[0, len) (named `path` in messages); buf must
 * outlive *f, which does not own it (f->map stays NULL). */
clipn_status clipn_st_open_memory(clipn_st_file *f, const char *path, const uint8_t *buf,
                                  size_t len, uint64_t max_header_bytes, uint64_t max_tensors,
                                  clipn_error *err);
/* Free the header and index; unmap unless the mapping was taken (f->map set to NULL). */
void clipn_st_close(clipn_st_file *f);
clipn_st_tensor *clipn_st_find(const clipn_st_file *f, const char *name);
/* The __metadata__ string under key, or NULL when absent or not a string. */
const char *clipn_st_meta_string(const clipn_st_file *f, const char *key);
const char *clipn_st_dtype_name(clipn_st_dtype d);
size_t clipn_st_dtype_size(clipn_st_dtype d);

#endif
