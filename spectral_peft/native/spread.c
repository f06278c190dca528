/* The spread of a token-major float32 array, for spectral_peft.native:
 *
 *   out[t, :] = 0,   out[t, dst[e]] += scale[e] * h[t, src[e]]   for every entry e
 *
 * (h: T x P, row stride ldh; out: T x Q, row stride ldo). The sparse route's core does this per
 * token chunk, in both directions. torch needs a zero fill, a gather of T x E values, a multiply
 * and a scatter-add. Here each thread takes a range of tokens in blocks of TB: the block of h is
 * copied feature-major into a buffer (8 x 8 register transposes), each entry adds scale[e] times
 * one contiguous TB-long row to another in a second buffer, and that buffer is copied back
 * token-major into out. Entries sorted by destination (as the compact route's gathers are) run
 * from registers. Threads write disjoint rows of out: results do not depend on the thread count.
 *
 * Returns 0, or -1 if a buffer could not be allocated (the caller then uses its torch route).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks.h"

#define TB 16
#define MAX_THREADS 64

typedef struct {
    const float *h;
    float *out;
    int64_t ldh, ldo, tokens, p_width, q_width, entries;
    const int32_t *src, *dst;
    const float *scale;
    int status;
} job_t;

static void run(job_t *job) {
    float *h_block = aligned_alloc(32, sizeof(float) * TB * (size_t)(job->p_width + 1));
    float *o_block = aligned_alloc(32, sizeof(float) * TB * (size_t)(job->q_width + 1));
    if (!h_block || !o_block) {
        job->status = -1;
        free(h_block), free(o_block);
        return;
    }
    /* Columns of o_block that no entry writes stay zero from here on. With more entries than
     * output columns, zeroing the whole block per token block is the cheaper of the two. */
    const int zero_all = job->entries > job->q_width;
    memset(o_block, 0, sizeof(float) * TB * (size_t)job->q_width);
    for (int64_t t0 = 0; t0 < job->tokens; t0 += TB) {
        const int64_t rows = job->tokens - t0 < TB ? job->tokens - t0 : TB;
        load_block(job->h + t0 * job->ldh, job->ldh, rows, job->p_width, h_block, TB);
        if (zero_all)
            memset(o_block, 0, sizeof(float) * TB * (size_t)job->q_width);
        else
            for (int64_t e = 0; e < job->entries; e++) memset(o_block + (int64_t)job->dst[e] * TB, 0, sizeof(float) * TB);
        /* Consecutive entries with one destination (a run) accumulate in registers, alternating
         * between two accumulators so that successive multiply-adds do not wait on each other. */
        for (int64_t e = 0; e < job->entries;) {
            float *y = o_block + (int64_t)job->dst[e] * TB;
            const int32_t d = job->dst[e];
#ifdef SPECTRAL_PEFT_VECTOR
            __m256 a0 = _mm256_load_ps(y), a1 = _mm256_load_ps(y + 8);
            __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
            for (;;) {
                const float *x = h_block + (int64_t)job->src[e] * TB;
                const __m256 s = _mm256_set1_ps(job->scale[e]);
                a0 = _mm256_fmadd_ps(s, _mm256_load_ps(x), a0);
                a1 = _mm256_fmadd_ps(s, _mm256_load_ps(x + 8), a1);
                if (++e >= job->entries || job->dst[e] != d) break;
                const float *x2 = h_block + (int64_t)job->src[e] * TB;
                const __m256 s2 = _mm256_set1_ps(job->scale[e]);
                b0 = _mm256_fmadd_ps(s2, _mm256_load_ps(x2), b0);
                b1 = _mm256_fmadd_ps(s2, _mm256_load_ps(x2 + 8), b1);
                if (++e >= job->entries || job->dst[e] != d) break;
            }
            _mm256_store_ps(y, _mm256_add_ps(a0, b0));
            _mm256_store_ps(y + 8, _mm256_add_ps(a1, b1));
#else
            float acc[TB];
            for (int k = 0; k < TB; k++) acc[k] = y[k];
            do {
                const float *x = h_block + (int64_t)job->src[e] * TB;
                for (int k = 0; k < TB; k++) acc[k] += job->scale[e] * x[k];
            } while (++e < job->entries && job->dst[e] == d);
            for (int k = 0; k < TB; k++) y[k] = acc[k];
#endif
        }
        store_block(o_block, TB, rows, job->q_width, job->out + t0 * job->ldo, job->ldo);
    }
    free(h_block), free(o_block);
    job->status = 0;
}

int spread_f32(const float *h, int64_t ldh, int64_t tokens, int64_t p_width, const int32_t *src,
               const int32_t *dst, const float *scale, int64_t entries, float *out, int64_t ldo,
               int64_t q_width, int threads) {
    const int64_t blocks = (tokens + TB - 1) / TB;
    if (blocks == 0) return 0;
    threads = block_threads(threads, blocks, MAX_THREADS);
    job_t jobs[MAX_THREADS];
    for (int k = 0; k < threads; k++) {
        int64_t first, last;
        thread_tokens(blocks, k, threads, TB, tokens, &first, &last);
        jobs[k] = (job_t){h + first * ldh, out + first * ldo, ldh, ldo, last - first, p_width, q_width,
                          entries, src, dst, scale, 0};
    }
#pragma omp parallel for num_threads(threads) schedule(static, 1) if (threads > 1)
    for (int k = 0; k < threads; k++) run(&jobs[k]);
    for (int k = 0; k < threads; k++)
        if (jobs[k].status) return jobs[k].status;
    return 0;
}
