/* Attention driver: heads run in parallel on the pool, each with its own scratch slot. */
#include "kernels_impl.h"

#include <stdint.h>

#define ROUND_UP(x, a) (((x) + (a) - 1) / (a) * (a))

size_t clipn_attention_head_scratch(int L, int hd)
{
    /* K^T [hd][Lp] + CLIPN_ATTN_ROWS rows of scores [Lp] + a copy of V [Lp][hd],
     * Lp = L rounded to 16, + align */
    const size_t lp = ROUND_UP((size_t)L, 16);
    return (2 * (size_t)hd + CLIPN_ATTN_ROWS) * lp + 16;
}

size_t clipn_attention_scratch_floats(int L, int W, int heads)
{
    if (L <= 0 || W <= 0 || heads <= 0 || W % heads != 0)
        return 0;
    const size_t per_head = ROUND_UP(clipn_attention_head_scratch(L, W / heads), 16);
    if (per_head > SIZE_MAX / sizeof(float) / (size_t)heads)
        return 0;
    return per_head * (size_t)heads;
}

typedef struct attention_job {
    const float *qkv;
    float *out, *scratch;
    int L, W, hd, causal;
    size_t per_head;
    const clipn_kernel_ops *ops;
} attention_job;

static void attention_task(void *arg, int h)
{
    const attention_job *job = arg;
    job->ops->attention_head(job->qkv, job->out, job->L, job->W, job->hd, h, job->causal,
                             job->scratch + (size_t)h * job->per_head);
}

void clipn_attention(const float *qkv, float *out, int L, int W, int heads, int causal,
                     float *scratch)
{
    if (L <= 0 || W <= 0 || heads <= 0 || W % heads != 0)
        return;
    attention_job job = {
        .qkv = qkv, .out = out, .scratch = scratch, .L = L, .W = W, .hd = W / heads,
        .causal = causal,
        .per_head = ROUND_UP(clipn_attention_head_scratch(L, W / heads), 16),
        .ops = clipn_kernels_ops(),
    };
    clipn_parallel_for(heads, attention_task, &job);
}
