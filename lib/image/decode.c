/* Image decoding to the mode PIL 9.4 would open the file in.
 *
 * JPEG goes through libjpeg-turbo with the settings PIL uses (ISLOW IDCT, fancy
 * upsampling, the library defaults), because stb_image's JPEG decoder differs from it by
 * a level or more (docs/images.md has the measurement). Everything else goes through
 * stb_image, compiled here as private (static) functions. stb_image does not say whether
 * a PNG/GIF/BMP/TGA was palette-based, so the few header bytes that decide PIL's mode are
 * parsed here.
 */
#include "image_internal.h"

#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

/* stb_image's allocations, through wrappers that remember a failure: stb reports it as
 * a decoding error ("outofmem", or another decoder's complaint after it gives up), and an
 * allocation failure must read as CLIPN_E_NOMEM, not as a corrupt file. */
static _Thread_local int stb_out_of_memory;
static void *stb_malloc(size_t n)
{
    void *p = malloc(n);
    stb_out_of_memory |= !p;
    return p;
}
static void *stb_realloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    stb_out_of_memory |= !q;
    return q;
}
#define STBI_MALLOC(n) stb_malloc(n)
#define STBI_REALLOC(p, n) stb_realloc(p, n)
#define STBI_FREE(p) free(p)
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_NO_HDR
#define STBI_NO_LINEAR
#define STBI_NO_PSD
#define STBI_NO_PIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <stb_image.h>
#pragma GCC diagnostic pop
/* stb_image 2.27 declares this one but never defines it (harmless, but a static
 * declaration without a definition warns). */
__attribute__((unused)) static void stbi_set_unpremultiply_on_load_thread(int flag) { (void)flag; }

int clipn_image_mode_channels(clipn_pil_mode mode)
{
    switch (mode) {
    case PIL_MODE_L: case PIL_MODE_1: case PIL_MODE_I: return 1;
    case PIL_MODE_LA: return 2;
    case PIL_MODE_RGB: case PIL_MODE_P: return 3;
    case PIL_MODE_RGBA: case PIL_MODE_CMYK: return 4;
    }
    return 0;
}


typedef enum image_format {
    FORMAT_UNKNOWN, FORMAT_JPEG, FORMAT_PNG, FORMAT_GIF, FORMAT_BMP, FORMAT_PNM, FORMAT_TGA
} image_format;

static unsigned be32(const uint8_t *p) { return (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | p[3]; }
static unsigned le16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }
static unsigned le32(const uint8_t *p) { return le16(p) | le16(p + 2) << 16; }

static image_format sniff(const uint8_t *d, size_t n)
{
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
        return FORMAT_JPEG;
    if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
        return FORMAT_PNG;
    if (n >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0))
        return FORMAT_GIF;
    if (n >= 2 && d[0] == 'B' && d[1] == 'M')
        return FORMAT_BMP;
    if (n >= 2 && d[0] == 'P' && d[1] >= '1' && d[1] <= '7')
        return FORMAT_PNM;
    /* TGA has no magic number: ask stb's TGA header reader alone. (stbi_info_from_memory
     * would try every decoder, and stb 2.27's JPEG one writes past a Huffman table on a
     * DHT segment declaring more than 256 codes, reached by "\xff\xff\xd8...", which stb
     * takes for a JPEG and we don't: fuzz_image found it.) */
    int w, h, c;
    stbi__context s;
    if (n <= INT_MAX) {
        stbi__start_mem(&s, d, (int)n);
        if (stbi__tga_info(&s, &w, &h, &c))
            return FORMAT_TGA;
    }
    return FORMAT_UNKNOWN;
}

/* A palette PIL reads as gray when entry i is (i, i, i) for every entry. */
static int palette_is_identity_ramp(const uint8_t *pal, int colors, int entry_bytes)
{
    for (int i = 0; i < colors; i++) {
        const uint8_t *e = pal + (size_t)i * entry_bytes;
        if (!(e[0] == i && e[1] == i && e[2] == i))
            return 0;
    }
    return 1;
}

/* ---- PIL mode per format (header parsing) */

static clipn_status png_mode(const uint8_t *d, size_t n, const char *name, clipn_pil_mode *mode,
                             int *sixteen, clipn_error *err)
{
    if (n < 33 || memcmp(d + 12, "IHDR", 4) != 0)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: PNG without a valid IHDR chunk", name);
    int depth = d[24], color = d[25];
    *sixteen = 0;
    switch (color) {
    case 0:
        *mode = depth == 1 ? PIL_MODE_1 : depth == 16 ? PIL_MODE_I : PIL_MODE_L;
        *sixteen = depth == 16;
        break;
    case 2: *mode = PIL_MODE_RGB; break;
    case 3: *mode = PIL_MODE_P; break;
    case 4: *mode = PIL_MODE_LA; break;
    case 6: *mode = PIL_MODE_RGBA; break;
    default:
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: PNG color type %d is invalid", name, color);
    }
    return CLIPN_OK;
}

typedef struct gif_info {
    const uint8_t *palette; /* the first frame's (local, else global) palette */
    int colors;
    int transparent;        /* index, or -1 */
} gif_info;

/* Walk to the first image descriptor: its palette and the transparency of its graphic
 * control extension decide PIL's mode and the colour of transparent pixels. 0 when the
 * file is malformed or ends before the first frame's data does. */
static int gif_parse(const uint8_t *d, size_t n, gif_info *gi)
{
    memset(gi, 0, sizeof *gi);
    gi->transparent = -1;
    if (n < 13)
        return 0;
    size_t pos = 13;
    if (d[10] & 0x80) {
        gi->colors = 2 << (d[10] & 7);
        gi->palette = d + 13;
        pos += (size_t)3 * gi->colors;
    }
    while (pos < n) {
        uint8_t b = d[pos];
        if (b == 0x21) { /* extension */
            if (pos + 2 > n)
                return 0;
            if (d[pos + 1] == 0xF9 && pos + 7 <= n && d[pos + 2] >= 4) {
                if (d[pos + 3] & 1)
                    gi->transparent = d[pos + 6];
            }
            pos += 2;
            while (pos < n && d[pos] != 0) /* sub-blocks */
                pos += (size_t)d[pos] + 1;
            pos++;
        } else if (b == 0x2C) { /* image descriptor */
            if (pos + 10 > n)
                return 0;
            uint8_t flags = d[pos + 9];
            pos += 10;
            if (flags & 0x80) {
                gi->colors = 2 << (flags & 7);
                gi->palette = d + pos;
                pos += (size_t)3 * gi->colors;
            }
            if (!gi->palette || pos >= n)
                return 0;
            /* the frame's data must be all there, up to its terminating empty sub-block
             * (PIL refuses a truncated first frame; stb would return it half drawn) */
            pos++; /* LZW minimum code size */
            while (pos < n && d[pos] != 0)
                pos += (size_t)d[pos] + 1;
            return pos <= n; /* PIL does not need the terminator itself */
        } else {
            return 0;
        }
    }
    return 0;
}

static clipn_status bmp_mode(const uint8_t *d, size_t n, const char *name, clipn_pil_mode *mode,
                             clipn_error *err)
{
    if (n < 30)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: truncated BMP header", name);
    unsigned header = le32(d + 14);
    unsigned bits, compression = 0, colors = 0, entry = 4;
    if (header == 12) {
        bits = le16(d + 24);
        entry = 3;
    } else {
        if (n < 54)
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: truncated BMP header", name);
        bits = le16(d + 28);
        compression = le32(d + 30);
        colors = le32(d + 46);
    }
    /* uncompressed pixel data must be all there (stb would decode a short file) */
    if (header != 12 && (compression == 0 || compression == 3)) {
        uint64_t w = le32(d + 18), h = le32(d + 22);
        if (h & 0x80000000u)
            h = 0x100000000ull - h; /* top-down */
        uint64_t row = (w * bits + 31) / 32 * 4;
        uint64_t need = le32(d + 10) + (h ? row * (h - 1) + (w * bits + 7) / 8 : 0);
        if (w < 65536 && h < 65536 && need > n) /* the last row's padding may be missing */
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: truncated BMP (%zu of %llu bytes)", name,
                              n, (unsigned long long)need);
    }
    if (bits <= 8) {
        if (colors == 0)
            colors = 1u << bits;
        size_t pal = 14 + (size_t)header;
        if (colors > 256 || pal + (size_t)colors * entry > n)
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: bad BMP palette", name);
        int gray;
        if (colors == 2) {
            const uint8_t *p = d + pal;
            gray = p[0] == 0 && p[1] == 0 && p[2] == 0 && p[entry] == 255 &&
                   p[entry + 1] == 255 && p[entry + 2] == 255;
        } else {
            gray = palette_is_identity_ramp(d + pal, (int)colors, (int)entry);
        }
        *mode = !gray ? PIL_MODE_P : colors == 2 ? PIL_MODE_1 : PIL_MODE_L;
    } else if (bits == 32 && compression == 3 && header >= 56 && n >= 14 + 56) {
        *mode = le32(d + 14 + 52) ? PIL_MODE_RGBA : PIL_MODE_RGB; /* alpha mask */
    } else {
        *mode = PIL_MODE_RGB;
    }
    return CLIPN_OK;
}

static clipn_status tga_mode(const uint8_t *d, size_t n, const char *name, clipn_pil_mode *mode,
                             clipn_error *err)
{
    if (n < 18)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: truncated TGA header", name);
    int type = d[2], depth = d[16];
    /* the pixel data must be all there (stb would decode a short file) */
    uint64_t w = le16(d + 12), h = le16(d + 14), bpp = (depth + 7) / 8;
    size_t pos = 18 + (size_t)d[0] + (d[1] ? (size_t)le16(d + 5) * ((d[7] + 7) / 8) : 0);
    if (type == 1 || type == 2 || type == 3) {
        if (pos + w * h * bpp > n)
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: truncated TGA", name);
    } else if (type == 9 || type == 10 || type == 11) { /* run-length packets */
        uint64_t done = 0;
        while (done < w * h && pos < n) {
            uint64_t count = (uint64_t)(d[pos] & 127) + 1;
            pos += 1 + (d[pos] & 128 ? bpp : count * bpp);
            done += count;
        }
        if (done < w * h || pos > n)
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: truncated TGA", name);
    }
    if (type == 1 || type == 9)
        *mode = PIL_MODE_P;
    else if ((type == 3 || type == 11) && (depth == 8 || depth == 16))
        *mode = depth == 16 ? PIL_MODE_LA : PIL_MODE_L;
    else if ((type == 2 || type == 10) && (depth == 24 || depth == 32))
        *mode = depth == 32 ? PIL_MODE_RGBA : PIL_MODE_RGB;
    else
        return clipn_fail(err, CLIPN_E_UNSUPPORTED, "%s: TGA type %d with %d bits per pixel "
                          "is not supported", name, type, depth);
    return CLIPN_OK;
}

/* Binary PGM/PPM with maxval 255 only (what PIL and stb_image agree on). */
static clipn_status pnm_mode(const uint8_t *d, size_t n, const char *name, clipn_pil_mode *mode,
                             clipn_error *err)
{
    if (d[1] != '5' && d[1] != '6')
        return clipn_fail(err, CLIPN_E_UNSUPPORTED, "%s: PNM type P%c is not supported (only "
                          "binary P5/P6)", name, d[1]);
    size_t pos = 2;
    long v[3];
    for (int i = 0; i < 3; i++) {
        /* whitespace and comments as PIL and stb_image read them: comments end at CR or
           LF, so that stb sees the same numbers as we do */
        for (;;) {
            while (pos < n && strchr(" \t\n\v\f\r", d[pos]) && d[pos])
                pos++;
            if (pos < n && d[pos] == '#') {
                while (pos < n && d[pos] != '\n' && d[pos] != '\r')
                    pos++;
                continue;
            }
            break;
        }
        if (pos >= n || d[pos] < '0' || d[pos] > '9')
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: bad PNM header", name);
        /* at most 9 digits: stb_image accumulates in an int (fuzz_image found the
           overflow); PIL refuses such sizes as decompression bombs anyway */
        v[i] = 0;
        int digits = 0;
        while (pos < n && d[pos] >= '0' && d[pos] <= '9') {
            if (++digits > 9)
                return clipn_fail(err, CLIPN_E_LIMIT, "%s: PNM header number too large", name);
            v[i] = v[i] * 10 + (d[pos++] - '0');
        }
    }
    if (v[2] != 255)
        return clipn_fail(err, CLIPN_E_UNSUPPORTED, "%s: PNM maxval %ld is not supported "
                          "(only 255)", name, v[2]);
    /* one whitespace byte, then the samples, which must be all there */
    uint64_t need = pos + 1 + (uint64_t)v[0] * (uint64_t)v[1] * (d[1] == '5' ? 1 : 3);
    if (need > n)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: truncated PNM (%zu of %llu bytes)", name, n,
                          (unsigned long long)need);
    *mode = d[1] == '5' ? PIL_MODE_L : PIL_MODE_RGB;
    return CLIPN_OK;
}

static clipn_status check_size(const char *name, uint64_t w, uint64_t h, uint64_t max_pixels,
                               clipn_error *err)
{
    if (w == 0 || h == 0)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: image has no pixels", name);
    if (w * h > max_pixels) /* w, h < 2^32: no overflow in 64 bits */
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: %llux%llu image exceeds the limit of %llu "
                          "pixels", name, (unsigned long long)w, (unsigned long long)h,
                          (unsigned long long)max_pixels);
    if (w > INT_MAX || h > INT_MAX || w * h > SIZE_MAX / 4 / sizeof(int32_t))
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: image too large", name);
    return CLIPN_OK;
}

/* ---- JPEG through libjpeg-turbo, streamed: rows are decoded when the resampler asks for
 * them, so a 12 MP photo never needs its 36 MB pixel buffer. */

typedef struct jpeg_error_ctx {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int premature_end;
    char message[JMSG_LENGTH_MAX];
} jpeg_error_ctx;

struct clipn_row_stream {
    struct jpeg_decompress_struct cinfo; /* heap-allocated: libjpeg keeps pointers to it */
    jpeg_error_ctx jerr;
    int created, invert;                 /* invert: PIL reads 4-component JPEGs as "CMYK;I" */
    uint8_t *row;
};

static void jpeg_error_exit_jump(j_common_ptr cinfo)
{
    jpeg_error_ctx *e = (jpeg_error_ctx *)cinfo->err;
    e->pub.format_message(cinfo, e->message);
    longjmp(e->jump, 1);
}

static void jpeg_emit_quiet(j_common_ptr cinfo, int level)
{
    jpeg_error_ctx *e = (jpeg_error_ctx *)cinfo->err;
    if (level < 0) {
        /* PIL refuses data that ends early ("image file is truncated"); other warnings
         * (extraneous bytes, ...) it tolerates, and so do we. */
        if (e->pub.msg_code == JWRN_JPEG_EOF)
            e->premature_end = 1;
        e->pub.num_warnings++;
    }
}

static void jpeg_stream_free(clipn_row_stream *js)
{
    if (!js)
        return;
    if (js->created)
        jpeg_destroy_decompress(&js->cinfo);
    free(js->row);
    free(js);
}

static clipn_status jpeg_failed(clipn_row_stream *js, const char *name, clipn_error *err)
{
    if (js->jerr.premature_end)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: truncated JPEG (premature end of data)",
                          name);
    if (js->jerr.pub.msg_code == JERR_OUT_OF_MEMORY) /* not the file's fault */
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory decoding the JPEG (%s)", name,
                          js->jerr.message);
    return clipn_fail(err, CLIPN_E_FORMAT, "%s: corrupt JPEG: %s", name, js->jerr.message);
}

/* Decode up to and including row y (a fresh setjmp per call: libjpeg errors longjmp here,
 * never across the resampler's frames). */
static clipn_status jpeg_stream_read(clipn_row_stream *js, int y, const char *name,
                                     clipn_error *err)
{
    struct jpeg_decompress_struct *c = &js->cinfo;
    if (setjmp(js->jerr.jump))
        return jpeg_failed(js, name, err);
    while ((int)c->output_scanline <= y && c->output_scanline < c->output_height) {
        JSAMPROW r = js->row;
        jpeg_read_scanlines(c, &r, 1);
        if (js->jerr.premature_end)
            return jpeg_failed(js, name, err);
    }
    return CLIPN_OK;
}

clipn_status clipn_image_row(const clipn_image *im, int y, const uint8_t **row,
                             const char *name, clipn_error *err)
{
    clipn_row_stream *js = im->stream;
    if (!js) {
        const uint8_t *base = im->borrowed ? im->borrowed : im->pixels;
        *row = base + (size_t)y * im->stride;
        return CLIPN_OK;
    }
    if (y < 0 || y >= im->height || y + 1 < (int)js->cinfo.output_scanline)
        return clipn_fail(err, CLIPN_E_INTERNAL, "%s: JPEG rows asked for out of order", name);
    clipn_status st = CLIPN_OK;
    if ((int)js->cinfo.output_scanline <= y) {
        if ((st = jpeg_stream_read(js, y, name, err)) != CLIPN_OK)
            return st;
        if (js->invert)
            for (size_t i = 0; i < im->stride; i++)
                js->row[i] = (uint8_t)(255 - js->row[i]);
    }
    *row = js->row;
    return CLIPN_OK;
}

clipn_status clipn_image_finish(const clipn_image *im, const char *name, clipn_error *err)
{
    clipn_row_stream *js = im->stream;
    if (!js)
        return CLIPN_OK;
    clipn_status st = jpeg_stream_read(js, im->height - 1, name, err);
    if (st != CLIPN_OK)
        return st;
    if (setjmp(js->jerr.jump))
        return jpeg_failed(js, name, err);
    jpeg_finish_decompress(&js->cinfo);
    return CLIPN_OK;
}

static clipn_status decode_jpeg(const uint8_t *data, size_t len, const char *name,
                                uint64_t max_pixels, clipn_image *out, clipn_error *err)
{
    if (len > ULONG_MAX)
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: file too large", name);
    clipn_row_stream *js = calloc(1, sizeof *js);
    if (!js)
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", name);
    struct jpeg_decompress_struct *c = &js->cinfo;
    c->err = jpeg_std_error(&js->jerr.pub);
    js->jerr.pub.error_exit = jpeg_error_exit_jump;
    js->jerr.pub.emit_message = jpeg_emit_quiet;
    if (setjmp(js->jerr.jump)) {
        clipn_status st = jpeg_failed(js, name, err);
        jpeg_stream_free(js);
        return st;
    }
    jpeg_create_decompress(c);
    js->created = 1;
    jpeg_mem_src(c, data, (unsigned long)len);
    jpeg_read_header(c, TRUE);
    clipn_status st = check_size(name, c->image_width, c->image_height, max_pixels, err);
    if (st != CLIPN_OK) {
        jpeg_stream_free(js);
        return st;
    }
    /* PIL picks the mode from the number of components and lets libjpeg choose the
     * colour transform; 4-component files are read as CMYK and inverted ("CMYK;I"). */
    clipn_pil_mode mode;
    switch (c->num_components) {
    case 1: mode = PIL_MODE_L; c->out_color_space = JCS_GRAYSCALE; break;
    case 3: mode = PIL_MODE_RGB; c->out_color_space = JCS_RGB; break;
    case 4: mode = PIL_MODE_CMYK; c->out_color_space = JCS_CMYK; break;
    default:
        st = clipn_fail(err, CLIPN_E_UNSUPPORTED, "%s: JPEG with %d components", name,
                        c->num_components);
        jpeg_stream_free(js);
        return st;
    }
    jpeg_start_decompress(c);
    const int C = clipn_image_mode_channels(mode);
    if (c->output_components != C) {
        jpeg_stream_free(js);
        return clipn_fail(err, CLIPN_E_INTERNAL, "%s: unexpected JPEG output components", name);
    }
    const size_t stride = (size_t)c->output_width * C;
    if (!(js->row = malloc(stride))) {
        jpeg_stream_free(js);
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", name);
    }
    js->invert = mode == PIL_MODE_CMYK;
    out->width = (int)c->output_width;
    out->height = (int)c->output_height;
    out->mode = mode;
    out->channels = C;
    out->stride = stride;
    out->stream = js;
    return CLIPN_OK;
}

/* ---- everything else through stb_image */

static const char *stb_reason(void)
{
    const char *r = stbi_failure_reason();
    return r && r[0] ? r : "unknown error";
}

/* A failed stb call: out of memory if one of its allocations failed, else `what`. */
static clipn_status stb_fail(clipn_error *err, const char *name, const char *what)
{
    if (stb_out_of_memory)
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory decoding the image", name);
    return clipn_fail(err, CLIPN_E_FORMAT, "%s: %s (%s)", name, what, stb_reason());
}

static const uint8_t png_iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};

static clipn_status decode_stb_pixels(const uint8_t *data, size_t len, const char *name,
                                      image_format fmt, clipn_pil_mode mode, int sixteen,
                                      const gif_info *gi, uint64_t max_pixels, clipn_image *out,
                                      clipn_error *err);

/* Empty IDAT chunks before the first one with data add nothing to the image, but stb
 * then does `NULL + 0` and memcpy(NULL, p, 0) (formally UB; fuzz_image found it). Give stb
 * a copy without them. */
static clipn_status png_drop_leading_empty_idat(const uint8_t **data, size_t *len,
                                                uint8_t **patched, const char *name,
                                                clipn_error *err)
{
    const uint8_t *d = *data;
    size_t n = *len, pos = 8;
    int found = 0;
    while (pos + 12 <= n && be32(d + pos) <= n - pos - 12) {
        size_t clen = be32(d + pos);
        if (memcmp(d + pos + 4, "IDAT", 4) == 0) {
            if (clen)
                break;
            found = 1;
        }
        pos += 12 + clen;
    }
    if (!found)
        return CLIPN_OK;
    uint8_t *p = malloc(n);
    if (!p)
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", name);
    memcpy(p, d, 8);
    size_t m = 8;
    pos = 8;
    while (pos + 12 <= n && be32(d + pos) <= n - pos - 12) {
        size_t clen = be32(d + pos);
        int idat = memcmp(d + pos + 4, "IDAT", 4) == 0;
        if (idat && clen)
            break;
        if (!idat) {
            memcpy(p + m, d + pos, 12 + clen);
            m += 12 + clen;
        }
        pos += 12 + clen;
    }
    memcpy(p + m, d + pos, n - pos);
    *patched = p;
    *data = p;
    *len = m + (n - pos);
    return CLIPN_OK;
}

/* PIL stops reading after the image data: it accepts a PNG that ends inside or before
 * IEND, or inside the last chunk's CRC. stb wants the chunks whole, so for such a file it
 * gets a copy cut at the end of the last chunk's data, with a zero CRC (stb does not check
 * CRCs) and an IEND. A file cut inside chunk data is refused here. */
static clipn_status png_complete_tail(const uint8_t **data, size_t *len, uint8_t **patched,
                                      const char *name, clipn_error *err)
{
    const uint8_t *d = *data;
    size_t n = *len, pos = 8, keep = n;
    int need_crc = 0;
    while (pos + 8 <= n) {
        size_t clen = be32(d + pos);
        if (memcmp(d + pos + 4, "IEND", 4) == 0) {
            keep = pos;
            break;
        }
        if (clen > n - pos - 8) /* cut inside the data: refuse before stb sizes a buffer
                                    by the declared length (fuzz_image: 4 KB -> 2 GB) */
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: truncated PNG (chunk %.4s declares %zu "
                              "bytes, %zu left)", name, (const char *)d + pos + 4, clen,
                              n - pos - 8);
        size_t end = pos + 8 + clen;
        if (n - end < 4) { /* cut inside the CRC */
            keep = end;
            need_crc = 1;
            break;
        }
        pos = end + 4;
        keep = pos;
    }
    if (pos + 8 <= n && memcmp(d + pos + 4, "IEND", 4) == 0 && n - pos >= sizeof png_iend)
        return CLIPN_OK; /* complete */
    uint8_t *p = malloc(keep + 4 + sizeof png_iend);
    if (!p)
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", name);
    memcpy(p, d, keep);
    size_t m = keep;
    if (need_crc) {
        memset(p + m, 0, 4);
        m += 4;
    }
    memcpy(p + m, png_iend, sizeof png_iend);
    *patched = p;
    *data = p;
    *len = m + sizeof png_iend;
    return CLIPN_OK;
}

static clipn_status decode_stb(const uint8_t *data, size_t len, const char *name,
                               image_format fmt, uint64_t max_pixels, clipn_image *out,
                               clipn_error *err)
{
    clipn_pil_mode mode = PIL_MODE_RGB;
    int sixteen = 0;
    gif_info gi = {0};
    clipn_status st = CLIPN_OK;
    switch (fmt) {
    case FORMAT_PNG: st = png_mode(data, len, name, &mode, &sixteen, err); break;
    case FORMAT_BMP: st = bmp_mode(data, len, name, &mode, err); break;
    case FORMAT_TGA: st = tga_mode(data, len, name, &mode, err); break;
    case FORMAT_PNM: st = pnm_mode(data, len, name, &mode, err); break;
    case FORMAT_GIF:
        if (!gif_parse(data, len, &gi))
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: corrupt or truncated GIF", name);
        mode = palette_is_identity_ramp(gi.palette, gi.colors, 3) ? PIL_MODE_L : PIL_MODE_P;
        break;
    case FORMAT_JPEG: /* stb's JPEG decoder, only when asked for */
        mode = PIL_MODE_RGB;
        break;
    default:
        return clipn_fail(err, CLIPN_E_UNSUPPORTED, "%s: unsupported image format", name);
    }
    if (st != CLIPN_OK)
        return st;
    /* The declared size, from the header itself: stb refuses very large headers with a
     * vague message, and nothing may be allocated for them. */
    if (fmt == FORMAT_PNG)
        st = check_size(name, be32(data + 16), be32(data + 20), max_pixels, err);
    else if (fmt == FORMAT_GIF)
        st = check_size(name, le16(data + 6), le16(data + 8), max_pixels, err);
    if (st != CLIPN_OK)
        return st;
    if (len > INT_MAX - 16)
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: file too large", name);
    uint8_t *patched = NULL, *no_empty_idat = NULL;
    if (fmt == FORMAT_PNG &&
        ((st = png_drop_leading_empty_idat(&data, &len, &no_empty_idat, name, err)) != CLIPN_OK ||
         (st = png_complete_tail(&data, &len, &patched, name, err)) != CLIPN_OK)) {
        free(no_empty_idat);
        return st;
    }
    st = decode_stb_pixels(data, len, name, fmt, mode, sixteen, &gi, max_pixels, out, err);
    free(patched);
    free(no_empty_idat);
    return st;
}

/* stb_image decode of a known format and PIL mode into out. gi: a GIF's first frame. */
static clipn_status decode_stb_pixels(const uint8_t *data, size_t len, const char *name,
                                      image_format fmt, clipn_pil_mode mode, int sixteen,
                                      const gif_info *gi, uint64_t max_pixels, clipn_image *out,
                                      clipn_error *err)
{
    clipn_status st;
    int w, h, comp;
    stb_out_of_memory = 0;
    if (!stbi_info_from_memory(data, (int)len, &w, &h, &comp))
        return stb_fail(err, name, "cannot read image header");
    /* stb's BMP header reader returns a top-down BMP's height negative, as stored; its
     * decoder flips and returns it positive, and PIL opens it the same way */
    if (fmt == FORMAT_BMP && h < 0 && h > INT_MIN)
        h = -h;
    if ((st = check_size(name, (uint64_t)w, (uint64_t)h, max_pixels, err)) != CLIPN_OK)
        return st;
    if (fmt == FORMAT_JPEG && comp == 1)
        mode = PIL_MODE_L;

    int C = clipn_image_mode_channels(mode);
    int x, y, got;
    if (sixteen) {
        stbi_us *p16 = stbi_load_16_from_memory(data, (int)len, &x, &y, &got, 1);
        if (!p16)
            return stb_fail(err, name, "corrupt image");
        int32_t *p32 = (x == w && y == h) ? malloc((size_t)w * h * sizeof(int32_t)) : NULL;
        if (!p32) {
            stbi_image_free(p16);
            return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", name);
        }
        for (size_t i = 0; i < (size_t)w * h; i++)
            p32[i] = p16[i];
        stbi_image_free(p16);
        out->pixels_i32 = p32;
        out->stride = (size_t)w * sizeof(int32_t);
    } else {
        /* GIF: ask for alpha to find the pixels stb leaves undrawn (transparent ones) */
        int req = fmt == FORMAT_GIF ? 4 : C;
        uint8_t *p = stbi_load_from_memory(data, (int)len, &x, &y, &got, req);
        if (!p)
            return stb_fail(err, name, "corrupt image");
        if (x != w || y != h) {
            stbi_image_free(p);
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: inconsistent image size", name);
        }
        if (fmt == FORMAT_GIF) {
            /* PIL keeps the palette index of transparent pixels (and fills the area
             * outside the first frame with the transparent index, else index 0). */
            int fill = gi->transparent >= 0 && gi->transparent < gi->colors ? gi->transparent : 0;
            const uint8_t *fc = gi->palette + 3 * fill;
            size_t npx = (size_t)w * h;
            for (size_t i = 0; i < npx; i++) {
                const uint8_t *s = p + 4 * i;
                uint8_t r = s[0], g = s[1], b = s[2];
                if (s[3] == 0) {
                    r = fc[0];
                    g = fc[1];
                    b = fc[2];
                }
                if (C == 1) {
                    p[i] = r;
                } else {
                    p[3 * i] = r;
                    p[3 * i + 1] = g;
                    p[3 * i + 2] = b;
                }
            }
        }
        out->pixels = p;
        out->stride = (size_t)w * C;
    }
    out->width = w;
    out->height = h;
    out->mode = mode;
    out->channels = C;
    return CLIPN_OK;
}

clipn_status clipn_image_decode(const uint8_t *data, size_t len, const char *name,
                                uint64_t max_pixels, int jpeg_with_stb, clipn_image *out,
                                clipn_error *err)
{
    memset(out, 0, sizeof *out);
    if (len == 0)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: empty file", name);
    image_format fmt = sniff(data, len);
    if (fmt == FORMAT_UNKNOWN)
        return clipn_fail(err, CLIPN_E_UNSUPPORTED, "%s: not a supported image (JPEG, PNG, "
                          "BMP, GIF, TGA, PNM)", name);
    if (fmt == FORMAT_JPEG && !jpeg_with_stb)
        return decode_jpeg(data, len, name, max_pixels, out, err);
    return decode_stb(data, len, name, fmt, max_pixels, out, err);
}

void clipn_image_release(clipn_image *im)
{
    free(im->pixels);
    free(im->pixels_i32);
    jpeg_stream_free(im->stream);
    memset(im, 0, sizeof *im);
}
