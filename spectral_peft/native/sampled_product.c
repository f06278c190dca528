/* The sampled product of two token-major float32 arrays, for spectral_peft.native.
 *
 *   out[e] += sum_t a[t, ia[e]] * b[t, ib[e]]      (a: T x Q, row stride lda; b: T x P, row stride ldb)
 *
 * Reading a[t, ia[e]] straight from the token-major arrays is a scattered gather per token and
 * entry. Instead, each thread takes a range of tokens and walks it in blocks of TB tokens: it
 * copies the block of a and of b feature-major into two small buffers (8 x 8 register
 * transposes), which stay in cache, and adds each entry's dot product of two contiguous TB-long
 * rows to a per-entry vector accumulator. a and b are read once, in order; nothing of size T x E
 * exists. Threads (OpenMP, see library.py) write their own partial sums, added in thread order
 * (deterministic for a given thread count).
 *
 * Built by library.py with -march=native; without AVX2 + FMA the same blocking runs in plain C.
 * Returns 0, or -1 if a buffer could not be allocated (the caller then uses its torch route).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks.h"

#define TB 16      /* tokens per block: two AVX2 vectors per entry and block */
#define MAX_THREADS 64

typedef struct {
    const float *a, *b;
    int64_t lda, ldb, tokens, q_width, p_width, entries;
    const int32_t *ia, *ib;
    float *out;
    int status;
} job_t;

static void run(job_t *job) {
    const int64_t entries = job->entries;
    float *a_block = aligned_alloc(32, sizeof(float) * TB * (size_t)(job->q_width + 1));
    float *b_block = aligned_alloc(32, sizeof(float) * TB * (size_t)(job->p_width + 1));
    float *acc = aligned_alloc(32, sizeof(float) * TB * (size_t)(entries + 1));
    if (!a_block || !b_block || !acc) {
        job->status = -1;
        free(a_block), free(b_block), free(acc);
        return;
    }
    memset(acc, 0, sizeof(float) * TB * (size_t)entries);
    for (int64_t t0 = 0; t0 < job->tokens; t0 += TB) {
        const int64_t rows = job->tokens - t0 < TB ? job->tokens - t0 : TB;
        load_block(job->a + t0 * job->lda, job->lda, rows, job->q_width, a_block, TB);
        load_block(job->b + t0 * job->ldb, job->ldb, rows, job->p_width, b_block, TB);
        for (int64_t e = 0; e < entries; e++) {
            const float *x = a_block + (int64_t)job->ia[e] * TB, *y = b_block + (int64_t)job->ib[e] * TB;
            float *s = acc + e * TB;
#ifdef SPECTRAL_PEFT_VECTOR
            __m256 lo = _mm256_fmadd_ps(_mm256_load_ps(x), _mm256_load_ps(y), _mm256_load_ps(s));
            __m256 hi = _mm256_fmadd_ps(_mm256_load_ps(x + 8), _mm256_load_ps(y + 8), _mm256_load_ps(s + 8));
            _mm256_store_ps(s, lo);
            _mm256_store_ps(s + 8, hi);
#else
            for (int k = 0; k < TB; k++) s[k] += x[k] * y[k];
#endif
        }
    }
    for (int64_t e = 0; e < entries; e++) {
        const float *s = acc + e * TB;
        float total = 0.0f;
        for (int k = 0; k < TB; k++) total += s[k];
        job->out[e] += total;
    }
    free(a_block), free(b_block), free(acc);
    job->status = 0;
}

int sampled_product_f32(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t tokens,
                        int64_t q_width, int64_t p_width, const int32_t *ia, const int32_t *ib,
                        int64_t entries, float *out, int threads) {
    const int64_t blocks = (tokens + TB - 1) / TB;
    if (blocks == 0 || entries == 0) return 0;
    threads = block_threads(threads, blocks, MAX_THREADS);
    float *partial = calloc((size_t)entries * threads, sizeof(float));
    if (!partial) return -1;
    job_t jobs[MAX_THREADS];
    for (int k = 0; k < threads; k++) {
        int64_t first, last;
        thread_tokens(blocks, k, threads, TB, tokens, &first, &last);
        jobs[k] = (job_t){a + first * lda, b + first * ldb, lda, ldb, last - first, q_width, p_width,
                          entries, ia, ib, partial + (size_t)entries * k, 0};
    }
#pragma omp parallel for num_threads(threads) schedule(static, 1) if (threads > 1)
    for (int k = 0; k < threads; k++) run(&jobs[k]);
    int status = 0;
    for (int k = 0; k < threads; k++)
        if (jobs[k].status) status = jobs[k].status;
    if (status == 0)
        for (int k = 0; k < threads; k++)
            for (int64_t e = 0; e < entries; e++) out[e] += partial[(size_t)entries * k + e];
    free(partial);
    return status;
}
