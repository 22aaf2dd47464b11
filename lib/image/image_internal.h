/* Private to the files of lib/image/: the decoded image and the PIL-exact resize + centre crop. */
#ifndef CLIPN_IMAGE_INTERNAL_H
#define CLIPN_IMAGE_INTERNAL_H

#include "internal.h"

/* The PIL mode the official code would see after Image.open. It decides how the image is
 * resized (PIL resizes in the image's own mode, then converts to RGB). */
typedef enum clipn_pil_mode {
    PIL_MODE_L,     /* 8-bit gray: bicubic on 1 channel */
    PIL_MODE_LA,    /* gray + alpha: premultiplied ("La") bicubic, alpha dropped */
    PIL_MODE_RGB,
    PIL_MODE_RGBA,  /* premultiplied ("RGBa") bicubic, alpha dropped */
    PIL_MODE_CMYK,  /* bicubic on 4 channels, then PIL's cmyk2rgb */
    PIL_MODE_P,     /* palette: Image.resize forces NEAREST; stored expanded to RGB */
    PIL_MODE_1,     /* bilevel: NEAREST; stored as 0/255 gray */
    PIL_MODE_I      /* 32-bit int gray (16-bit PNGs): double-precision bicubic, clipped */
} clipn_pil_mode;

/* Rows decoded on demand (JPEG): the full-size image never exists in memory. */
typedef struct clipn_row_stream clipn_row_stream;

typedef struct clipn_image {
    int width, height;
    int channels;           /* bytes per pixel of `pixels` (1..4); 1 for PIL_MODE_I */
    clipn_pil_mode mode;
    uint8_t *pixels;        /* 8-bit interleaved rows, tightly packed (not PIL_MODE_I) */
    int32_t *pixels_i32;    /* PIL_MODE_I only */
    const uint8_t *borrowed;/* caller's pixels (clipn_preprocess_pixels), not freed */
    size_t stride;          /* bytes between rows of the 8-bit data */
    clipn_row_stream *stream; /* instead of pixels: rows from the decoder, in order */
} clipn_image;

/* Row y of an 8-bit image into *row. A stream's rows must be asked for in increasing
 * order (rows skipped are decoded and dropped); a decoding error is returned. */
clipn_status clipn_image_row(const clipn_image *im, int y, const uint8_t **row,
                             const char *name, clipn_error *err);
/* For a stream: decode the remaining rows (a truncated file must still fail, as in PIL)
 * and finish cleanly. No-op otherwise. */
clipn_status clipn_image_finish(const clipn_image *im, const char *name, clipn_error *err);

/* Channels a mode is stored with. */
int clipn_image_mode_channels(clipn_pil_mode mode);
void clipn_image_release(clipn_image *im);

/* Decode an encoded image (JPEG, PNG, BMP, GIF, TGA, PNM) to the mode PIL would open it
 * in. `name` is used in messages. The declared size is checked against max_pixels
 * before anything large is allocated. jpeg_with_stb selects stb_image's JPEG decoder
 * instead of libjpeg-turbo (only for measuring the difference; see docs/images.md). */
clipn_status clipn_image_decode(const uint8_t *data, size_t len, const char *name,
                                uint64_t max_pixels, int jpeg_with_stb, clipn_image *out,
                                clipn_error *err);

/* torchvision Resize(S) (shorter side to S, PIL resample in the image's mode) followed by
 * CenterCrop(S) and convert('RGB'): writes S*S*3 bytes (HWC). Only the pixels inside the
 * crop are computed; they are identical to PIL's full resize followed by the crop. */
clipn_status clipn_image_resize_crop_rgb(const clipn_image *im, int size, uint8_t *rgb,
                                         const char *name, clipn_error *err);

/* Preprocess with an explicit JPEG decoder choice (see clipn_image_decode). */
clipn_status clipn_preprocess_memory_ex(const void *data, size_t len, const char *name,
                                        const clipn_image_opts *opts, int jpeg_with_stb,
                                        float *out, clipn_error *err);

/* Largest image file clipn_preprocess_file reads. */
#define CLIPN_MAX_IMAGE_FILE_BYTES (1ull << 30)

#endif
