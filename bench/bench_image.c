/* Image preprocessing speed (process CPU time, best of 5: the machine is shared): a 12-megapixel (4000x3000) photo-like JPEG, generated here
 * with libjpeg-turbo, through decode + resize + crop + normalise, and the resize alone
 * (clipn_preprocess_pixels on the decoded pixels). Prints milliseconds (best of N). */
#include "clipn.h"

#include <stdint.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <jpeglib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define W 4000
#define H 3000

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Smooth gradients, edges and a little noise: compresses like a photo, not like a flat fill. */
static uint8_t *make_pixels(int channels)
{
    uint8_t *p = malloc((size_t)W * H * channels);
    if (!p)
        return NULL;
    uint32_t rng = 12345;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            rng = rng * 1664525u + 1013904223u;
            int noise = (int)(rng >> 28) - 8;
            int v[4] = {(x * 255 / W + noise) & 255, (y * 255 / H + ((x / 97) & 1) * 60) & 255,
                        ((x ^ y) >> 4 & 255), 128 + ((x + y) & 127)};
            for (int c = 0; c < channels; c++)
                p[((size_t)y * W + x) * channels + c] = (uint8_t)v[c];
        }
    return p;
}

static unsigned char *encode_jpeg(const uint8_t *rgb, unsigned long *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *buf = NULL;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, len);
    c.image_width = W;
    c.image_height = H;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)c.next_scanline * W * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return buf;
}

typedef struct {
    const char *what;
    const uint8_t *data;
    size_t len;
    int channels; /* 0: encoded data */
} bench_case;

static double run(const bench_case *bc, const clipn_image_opts *o, float *out, int reps)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        clipn_error err;
        double t0 = now_ms();
        clipn_status st = bc->channels
                              ? clipn_preprocess_pixels(bc->data, W, H, bc->channels, 0, o, out, &err)
                              : clipn_preprocess_memory(bc->data, bc->len, o, out, &err);
        double t = now_ms() - t0;
        if (st != CLIPN_OK) {
            fprintf(stderr, "bench_image: %s: %s\n", bc->what, err.message);
            exit(1);
        }
        if (t < best)
            best = t;
    }
    return best;
}

int main(void)
{
    clipn_image_opts o;
    clipn_image_opts_default(&o);
    float *out = malloc(sizeof(float) * 3 * 224 * 224);
    uint8_t *rgb = make_pixels(3), *rgba = make_pixels(4), *gray = make_pixels(1);
    if (!out || !rgb || !rgba || !gray)
        return 1;
    unsigned long jpeg_len = 0;
    unsigned char *jpeg = encode_jpeg(rgb, &jpeg_len);

    bench_case cases[] = {
        {"decode+preprocess 12 MP JPEG (q90, 4:2:0)", jpeg, jpeg_len, 0},
        {"resize+crop+normalise 12 MP RGB pixels", rgb, 0, 3},
        {"resize+crop+normalise 12 MP RGBA pixels", rgba, 0, 4},
        {"resize+crop+normalise 12 MP gray pixels", gray, 0, 1},
    };
    printf("bench_image: %dx%d -> 224x224 (JPEG %lu bytes)\n", W, H, jpeg_len);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        printf("  %-45s %8.2f ms\n", cases[i].what, run(&cases[i], &o, out, 5));
    free(jpeg);
    free(rgb);
    free(rgba);
    free(gray);
    free(out);
    return 0;
}
