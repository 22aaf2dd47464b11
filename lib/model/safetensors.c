/* Strict safetensors reader. The file is mmapped read-only; the header is parsed with cJSON
 * from a NUL-terminated copy, and every entry is validated before anyone looks at data. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A valid header nests 3 deep (root -> entry -> shape); anything far deeper is hostile
 * and cJSON's own limit (1000) would recurse that deep on our stack. */
#define MAX_HEADER_DEPTH 16
/* Offsets and dims travel as JSON numbers (doubles): exact up to 2^53. */
#define MAX_JSON_UINT 9007199254740992.0

static const struct {
    const char *name;
    clipn_st_dtype dtype;
    size_t size;
} dtypes[] = {
    {"F32", CLIPN_ST_F32, 4},
    {"F16", CLIPN_ST_F16, 2},
    {"BF16", CLIPN_ST_BF16, 2},
    {"U8", CLIPN_ST_U8, 1},
    {"I8", CLIPN_ST_I8, 1},
};

const char *clipn_st_dtype_name(clipn_st_dtype d)
{
    return dtypes[d].name;
}

size_t clipn_st_dtype_size(clipn_st_dtype d)
{
    return dtypes[d].size;
}

/* A JSON number that is a non-negative integer exactly representable as a double. */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= MAX_JSON_UINT) || floor(d) != d)
        return 0;
    *out = (uint64_t)d;
    return 1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const clipn_st_tensor *)a)->name, ((const clipn_st_tensor *)b)->name);
}

static int by_begin(const void *a, const void *b)
{
    const clipn_st_tensor *x = *(const clipn_st_tensor *const *)a;
    const clipn_st_tensor *y = *(const clipn_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static clipn_status parse_entry(clipn_st_file *f, const cJSON *e, clipn_st_tensor *t,
                                clipn_error *err)
{
    const char *path = f->path;
    t->name = e->string;
    if (!cJSON_IsObject(e))
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: tensor '%.200s' is not a JSON object", path,
                          t->name);

    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dtype))
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: tensor '%.200s' has no \"dtype\" string",
                          path, t->name);
    size_t k = 0, n_dtypes = sizeof dtypes / sizeof dtypes[0];
    while (k < n_dtypes && strcmp(dtype->valuestring, dtypes[k].name) != 0)
        k++;
    if (k == n_dtypes)
        return clipn_fail(err, CLIPN_E_UNSUPPORTED,
                          "%s: tensor '%.200s' has dtype '%.32s'; libclipn reads F32, F16, BF16, "
                          "U8 and I8",
                          path, t->name, dtype->valuestring);
    t->dtype = dtypes[k].dtype;

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(shape))
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: tensor '%.200s' has no \"shape\" array",
                          path, t->name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > CLIPN_ST_MAX_DIMS)
        return clipn_fail(err, CLIPN_E_UNSUPPORTED, "%s: tensor '%.200s' has %d dims (at most %d)",
                          path, t->name, ndim, CLIPN_ST_MAX_DIMS);
    t->ndim = ndim;
    const cJSON *d;
    int i = 0, has_zero = 0;
    cJSON_ArrayForEach(d, shape)
    {
        if (!json_uint(d, &t->shape[i]))
            return clipn_fail(err, CLIPN_E_FORMAT,
                              "%s: tensor '%.200s' shape entry %d is not a non-negative integer",
                              path, t->name, i);
        has_zero |= t->shape[i++] == 0;
    }
    size_t dsize = dtypes[k].size;
    uint64_t numel = has_zero ? 0 : 1;
    for (i = 0; i < ndim && numel; i++) {
        if (numel > UINT64_MAX / dsize / t->shape[i])
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: tensor '%.200s' element count overflows",
                              path, t->name);
        numel *= t->shape[i];
    }
    t->numel = numel;

    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_uint(cJSON_GetArrayItem(offs, 0), &t->begin) ||
        !json_uint(cJSON_GetArrayItem(offs, 1), &t->end))
        return clipn_fail(err, CLIPN_E_FORMAT,
                          "%s: tensor '%.200s' needs \"data_offsets\": [begin, end] of "
                          "non-negative integers",
                          path, t->name);
    if (t->end < t->begin)
        return clipn_fail(err, CLIPN_E_FORMAT,
                          "%s: tensor '%.200s' data_offsets [%llu, %llu] end before begin", path,
                          t->name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > f->data_len)
        return clipn_fail(err, CLIPN_E_FORMAT,
                          "%s: tensor '%.200s' data_offsets [%llu, %llu] lie beyond the data "
                          "section (%llu bytes; file truncated?)",
                          path, t->name, (unsigned long long)t->begin,
                          (unsigned long long)t->end, (unsigned long long)f->data_len);
    if (t->end - t->begin != numel * dsize)
        return clipn_fail(err, CLIPN_E_FORMAT,
                          "%s: tensor '%.200s' holds %llu bytes, dtype %s and shape need %llu",
                          path, t->name, (unsigned long long)(t->end - t->begin),
                          dtypes[k].name, (unsigned long long)(numel * dsize));
    t->data = f->data + t->begin;
    return CLIPN_OK;
}

static clipn_status parse_header(clipn_st_file *f, const char *text, size_t len,
                                 uint64_t max_tensors, clipn_error *err)
{
    const char *path = f->path;
    /* A valid entry is at most 1 + 1 + (1 + 8) + (1 + 2) = 14 values and __metadata__
       holds a few strings: anything far beyond is refused before cJSON allocates (a 10 MB
       header of one array cost 435 MB, 50 MB cost 2.2 GB). So cJSON builds at most
       16 values per entry + 1024, ~64 bytes each, whatever the header's size. */
    char what[300];
    snprintf(what, sizeof what, "%s: header", path);
    const clipn_json_limits lim = {.max_depth = MAX_HEADER_DEPTH,
                                   .max_values = 1024,
                                   .values_per_root_member = 16,
                                   .max_root_members = max_tensors + 1};
    clipn_status js = clipn_json_parse_strict(text, len, &lim, what, &f->header, err);
    if (js != CLIPN_OK)
        return js;
    if (!cJSON_IsObject(f->header))
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: header is not a JSON object", path);

    size_t count = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, f->header)
    {
        if (e->string && strcmp(e->string, "__metadata__") == 0) {
            if (f->metadata)
                return clipn_fail(err, CLIPN_E_FORMAT, "%s: header has two __metadata__", path);
            if (!cJSON_IsObject(e))
                return clipn_fail(err, CLIPN_E_FORMAT, "%s: __metadata__ is not an object", path);
            f->metadata = e;
        } else {
            count++;
        }
    }
    if (count > max_tensors)
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: header lists %zu tensors (limit %llu)", path,
                          count, (unsigned long long)max_tensors);
    if (count == 0)
        return CLIPN_OK;

    f->tensors = calloc(count, sizeof *f->tensors);
    if (!f->tensors)
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for %zu tensors", path, count);
    size_t i = 0;
    cJSON_ArrayForEach(e, f->header)
    {
        if (e == f->metadata)
            continue;
        clipn_status s = parse_entry(f, e, &f->tensors[i++], err);
        f->n_tensors = i;
        if (s != CLIPN_OK)
            return s;
    }

    qsort(f->tensors, count, sizeof *f->tensors, by_name);
    for (i = 1; i < count; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0)
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: tensor '%.200s' is listed twice", path,
                              f->tensors[i].name);

    /* No two non-empty tensors may share bytes: sort by begin, compare neighbours. */
    const clipn_st_tensor **order = malloc(count * sizeof *order);
    if (!order)
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
    size_t n_order = 0;
    for (i = 0; i < count; i++)
        if (f->tensors[i].end > f->tensors[i].begin)
            order[n_order++] = &f->tensors[i];
    qsort(order, n_order, sizeof *order, by_begin);
    clipn_status s = CLIPN_OK;
    for (i = 1; i < n_order; i++)
        if (order[i]->begin < order[i - 1]->end) {
            s = clipn_fail(err, CLIPN_E_FORMAT, "%s: tensors '%.200s' and '%.200s' overlap", path,
                           order[i - 1]->name, order[i]->name);
            break;
        }
    free(order);
    return s;
}

/* Index a whole safetensors image buf[0, size): header length, header JSON, entries. */
static clipn_status st_index(clipn_st_file *f, const uint8_t *buf, uint64_t size,
                             uint64_t max_header_bytes, uint64_t max_tensors, clipn_error *err)
{
    const char *path = f->path;
    if (size < 8)
        return clipn_fail(err, CLIPN_E_FORMAT,
                          "%s: file is %llu bytes, too short for a safetensors header", path,
                          (unsigned long long)size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | buf[i];
    if (n > size - 8)
        return clipn_fail(err, CLIPN_E_FORMAT,
                          "%s: header length %llu runs past the end of the file (%llu bytes)",
                          path, (unsigned long long)n, (unsigned long long)size);
    if (n > max_header_bytes)
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: header is %llu bytes (limit %llu)", path,
                          (unsigned long long)n, (unsigned long long)max_header_bytes);
    f->data = buf + 8 + n;
    f->data_len = size - 8 - n;

    char *text = malloc((size_t)n + 1); /* cJSON wants a NUL-terminated string */
    if (!text)
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for a %llu-byte header", path,
                          (unsigned long long)n);
    memcpy(text, buf + 8, (size_t)n);
    text[n] = '\0';
    clipn_status s = parse_header(f, text, (size_t)n, max_tensors, err);
    free(text);
    return s;
}

clipn_status clipn_st_open(clipn_st_file *f, const char *path, uint64_t max_header_bytes,
                           uint64_t max_tensors, clipn_error *err)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    int fd;
    uint64_t size;
    struct stat st;
    clipn_status ost = clipn_open_input(path, UINT64_MAX, &fd, &size, &st, err);
    if (ost != CLIPN_OK)
        return ost;
    f->dev = (uint64_t)st.st_dev;
    f->ino = (uint64_t)st.st_ino;
    if (size < 8) {
        close(fd);
        return clipn_fail(err, CLIPN_E_FORMAT,
                          "%s: file is %llu bytes, too short for a safetensors header", path,
                          (unsigned long long)size);
    }
    if (size > SIZE_MAX) {
        close(fd);
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: file too large to map", path);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED)
        return clipn_fail(err, CLIPN_E_IO, "%s: mmap: %s", path, strerror(e));
    f->map = map;
    f->map_len = (size_t)size;
    clipn_status s = st_index(f, f->map, size, max_header_bytes, max_tensors, err);
    if (s != CLIPN_OK)
        clipn_st_close(f);
    return s;
}

clipn_status clipn_st_open_memory(clipn_st_file *f, const char *path, const uint8_t *buf,
                                  size_t len, uint64_t max_header_bytes, uint64_t max_tensors,
                                  clipn_error *err)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    clipn_status s = st_index(f, buf, (uint64_t)len, max_header_bytes, max_tensors, err);
    if (s != CLIPN_OK)
        clipn_st_close(f); /* f->map is NULL: the caller's buffer is left alone */
    return s;
}

void clipn_st_close(clipn_st_file *f)
{
    if (f->map)
        munmap(f->map, f->map_len);
    cJSON_Delete(f->header);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

clipn_st_tensor *clipn_st_find(const clipn_st_file *f, const char *name)
{
    if (f->n_tensors == 0)
        return NULL;
    clipn_st_tensor key;
    key.name = name;
    return bsearch(&key, f->tensors, f->n_tensors, sizeof *f->tensors, by_name);
}

const char *clipn_st_meta_string(const clipn_st_file *f, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(f->metadata, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
