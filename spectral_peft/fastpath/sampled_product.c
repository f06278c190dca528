/* The sampled product of two token-major float32 arrays, for spectral_peft.fastpath.native.
 *
 *   out[e] += sum_t a[t, ia[e]] * b[t, ib[e]]      (a: T x Q, row stride lda; b: T x P, row stride ldb)
 *
 * Reading a[t, ia[e]] straight from the token-major arrays is a scattered gather per token and
 * entry. Instead, each thread takes a range of tokens and walks it in blocks of TB tokens: it
 * copies the block of a and of b feature-major into two small buffers (8 x 8 register
 * transposes), which stay in cache, and adds each entry's dot product of two contiguous TB-long
 * rows to a per-entry vector accumulator. a and b are read once, in order; nothing of size T x E
 * exists. Threads write their own partial sums, added in thread order (deterministic for a given
 * thread count).
 *
 * Built by native.py with -march=native; without AVX2 + FMA the same blocking runs in plain C.
 * Returns 0, or -1 if a buffer could not be allocated (the caller then uses its torch route).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define VECTOR 1
#endif

#define TB 16      /* tokens per block: two AVX2 vectors per entry and block */
#define MAX_THREADS 64

typedef struct {
    const float *a, *b;
    int64_t lda, ldb, tokens, q_width, p_width, entries;
    const int32_t *ia, *ib;
    float *out;
    int status;
} job_t;

#ifdef VECTOR
/* d[k * TB + i] = s[i * ld + k] for an 8 x 8 tile (d 32-byte aligned, TB a multiple of 8). */
static inline void transpose8(const float *s, int64_t ld, float *d) {
    __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ld);
    __m256 r2 = _mm256_loadu_ps(s + 2 * ld), r3 = _mm256_loadu_ps(s + 3 * ld);
    __m256 r4 = _mm256_loadu_ps(s + 4 * ld), r5 = _mm256_loadu_ps(s + 5 * ld);
    __m256 r6 = _mm256_loadu_ps(s + 6 * ld), r7 = _mm256_loadu_ps(s + 7 * ld);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_store_ps(d + 0 * TB, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_store_ps(d + 1 * TB, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_store_ps(d + 2 * TB, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_store_ps(d + 3 * TB, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_store_ps(d + 4 * TB, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_store_ps(d + 5 * TB, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_store_ps(d + 6 * TB, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_store_ps(d + 7 * TB, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

/* dst[f * TB + t] = src[t * ld + f] for t < rows, f < width; zero for rows <= t < TB. */
static void transpose_block(const float *src, int64_t ld, int64_t rows, int64_t width, float *dst) {
    int64_t t = 0;
#ifdef VECTOR
    const int64_t vector_width = width & ~(int64_t)7;
    for (; t + 8 <= rows; t += 8) {
        const float *s = src + t * ld;
        for (int64_t f = 0; f < vector_width; f += 8) transpose8(s + f, ld, dst + f * TB + t);
        for (int64_t f = vector_width; f < width; f++)
            for (int i = 0; i < 8; i++) dst[f * TB + t + i] = s[i * ld + f];
    }
#endif
    for (; t < TB; t++)
        for (int64_t f = 0; f < width; f++) dst[f * TB + t] = t < rows ? src[t * ld + f] : 0.0f;
}

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
        transpose_block(job->a + t0 * job->lda, job->lda, rows, job->q_width, a_block);
        transpose_block(job->b + t0 * job->ldb, job->ldb, rows, job->p_width, b_block);
        for (int64_t e = 0; e < entries; e++) {
            const float *x = a_block + (int64_t)job->ia[e] * TB, *y = b_block + (int64_t)job->ib[e] * TB;
            float *s = acc + e * TB;
#ifdef VECTOR
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

static void *worker(void *job) {
    run((job_t *)job);
    return NULL;
}

int sampled_product_f32(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t tokens,
                        int64_t q_width, int64_t p_width, const int32_t *ia, const int32_t *ib,
                        int64_t entries, float *out, int threads) {
    const int64_t blocks = (tokens + TB - 1) / TB;
    if (blocks == 0 || entries == 0) return 0;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > blocks) threads = (int)blocks;
    if (threads < 1) threads = 1;
    float *partial = calloc((size_t)entries * threads, sizeof(float));
    if (!partial) return -1;
    job_t jobs[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int k = 0; k < threads; k++) {
        const int64_t first = blocks * k / threads * TB;
        int64_t last = blocks * (k + 1) / threads * TB;
        if (last > tokens) last = tokens;
        jobs[k] = (job_t){a + first * lda, b + first * ldb, lda, ldb, last - first, q_width, p_width,
                          entries, ia, ib, partial + (size_t)entries * k, 0};
    }
    for (int k = 1; k < threads; k++) started[k] = pthread_create(&ids[k], NULL, worker, &jobs[k]) == 0;
    for (int k = 1; k < threads; k++)
        if (!started[k]) run(&jobs[k]);  /* no thread to spare: do its share here */
    run(&jobs[0]);
    int status = jobs[0].status;
    for (int k = 1; k < threads; k++) {
        if (started[k]) pthread_join(ids[k], NULL);
        if (jobs[k].status) status = jobs[k].status;
    }
    if (status == 0)
        for (int k = 0; k < threads; k++)
            for (int64_t e = 0; e < entries; e++) out[e] += partial[(size_t)entries * k + e];
    free(partial);
    return status;
}
