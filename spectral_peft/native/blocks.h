/* Token blocks for the kernels of spectral_peft.native: a few tokens of a token-major float32 array
 * (row t = one token, row stride ld) copied feature-major into a small buffer, where feature f of
 * the block is `stride` consecutive floats (one per token), and back.
 *
 * With AVX2 the copies move 8 x 8 tiles through registers; without it the same loops run in plain C.
 */
#ifndef SPECTRAL_PEFT_BLOCKS_H
#define SPECTRAL_PEFT_BLOCKS_H

#include <stdint.h>

/* Token blocks per thread below which a kernel stays on one thread (a parallel region costs a few
 * microseconds). Built without OpenMP, the kernels' `omp` pragmas are ignored: one thread. */
#define MIN_BLOCKS_PER_THREAD 4

/* Threads for a kernel that splits `blocks` token blocks among them: at most `requested` and
 * `max`, none with fewer than MIN_BLOCKS_PER_THREAD blocks, at least one. */
static inline int block_threads(int requested, int64_t blocks, int max) {
    int threads = requested < max ? requested : max;
    if (threads > blocks / MIN_BLOCKS_PER_THREAD) threads = (int)(blocks / MIN_BLOCKS_PER_THREAD);
    return threads < 1 ? 1 : threads;
}

/* The tokens [*first, *last) of thread k of `threads`, which share `blocks` blocks of `block`
 * tokens (the last block may be short: `tokens` in all). */
static inline void thread_tokens(int64_t blocks, int k, int threads, int64_t block, int64_t tokens,
                                 int64_t *first, int64_t *last) {
    *first = blocks * k / threads * block;
    *last = blocks * (k + 1) / threads * block;
    if (*last > tokens) *last = tokens;
}

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SPECTRAL_PEFT_VECTOR 1

/* d[k * ld + i] = s[i * ls + k] for i, k < 8. */
static inline void transpose8(const float *s, int64_t ls, float *d, int64_t ld) {
    __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ls);
    __m256 r2 = _mm256_loadu_ps(s + 2 * ls), r3 = _mm256_loadu_ps(s + 3 * ls);
    __m256 r4 = _mm256_loadu_ps(s + 4 * ls), r5 = _mm256_loadu_ps(s + 5 * ls);
    __m256 r6 = _mm256_loadu_ps(s + 6 * ls), r7 = _mm256_loadu_ps(s + 7 * ls);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(d + 0 * ld, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d + 1 * ld, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d + 2 * ld, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d + 3 * ld, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d + 4 * ld, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d + 5 * ld, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d + 6 * ld, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d + 7 * ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

/* dst[f * stride + t] = src[t * ld + f] for t < rows, f < width; zero for rows <= t < stride
 * (stride a multiple of 8). */
static inline void load_block(const float *src, int64_t ld, int64_t rows, int64_t width, float *dst, int64_t stride) {
    int64_t t = 0;
#ifdef SPECTRAL_PEFT_VECTOR
    const int64_t vector_width = width & ~(int64_t)7;
    for (; t + 8 <= rows; t += 8) {
        const float *s = src + t * ld;
        for (int64_t f = 0; f < vector_width; f += 8) transpose8(s + f, ld, dst + f * stride + t, stride);
        for (int64_t f = vector_width; f < width; f++)
            for (int i = 0; i < 8; i++) dst[f * stride + t + i] = s[i * ld + f];
    }
#endif
    for (; t < stride; t++)
        for (int64_t f = 0; f < width; f++) dst[f * stride + t] = t < rows ? src[t * ld + f] : 0.0f;
}

/* dst[t * ld + f] = src[f * stride + t] for t < rows, f < width: the inverse of load_block. */
static inline void store_block(const float *src, int64_t stride, int64_t rows, int64_t width, float *dst, int64_t ld) {
    int64_t t = 0;
#ifdef SPECTRAL_PEFT_VECTOR
    const int64_t vector_width = width & ~(int64_t)7;
    for (; t + 8 <= rows; t += 8) {
        float *d = dst + t * ld;
        for (int64_t f = 0; f < vector_width; f += 8) transpose8(src + f * stride + t, stride, d + f, ld);
        for (int64_t f = vector_width; f < width; f++)
            for (int i = 0; i < 8; i++) d[i * ld + f] = src[f * stride + t + i];
    }
#endif
    for (; t < rows; t++)
        for (int64_t f = 0; f < width; f++) dst[t * ld + f] = src[f * stride + t];
}

#endif
