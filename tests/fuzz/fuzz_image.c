/* libFuzzer: image decode (libjpeg, stb_image: PNG, GIF, BMP, TGA, PNM, ...) and the
 * PIL-compatible resize / crop / normalise, at a small output size. */
#include "clipn.h"

#include <math.h>
#include <stdlib.h>

#define SIDE 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static float out[3 * SIDE * SIDE];
    clipn_image_opts opts;
    clipn_image_opts_default(&opts);
    opts.image_size = SIDE;
    opts.max_pixels = 1 << 22; /* 4 Mpixel: keeps the fuzzer far from its RSS limit */
    clipn_error err;
    if (clipn_preprocess_memory(data, size, &opts, out, &err) != CLIPN_OK)
        return 0;
    for (int i = 0; i < 3 * SIDE * SIDE; i++)
        if (!isfinite(out[i]))
            abort();
    return 0;
}
