/* Umbrella header of lib/: every internal header, by concern. Not installed. A file may
 * include just the header it needs instead. */
#ifndef CLIPN_INTERNAL_H
#define CLIPN_INTERNAL_H

#include "clipn.h"
#include "../kernels/kernels.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/json.h"
#include "core/file_io.h"
#include "model/model.h"
#include "core/context.h"
#include "nn/towers.h"
#include "ood/ood.h"
#include "text/tokenizer.h"

/* the shared residual block and layer loop */
#include "nn/transformer.h"

#endif
