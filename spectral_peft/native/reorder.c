/* Makhoul's even/odd reordering along the last dimension of float32 arrays, for
 * spectral_peft.native.reorder (the DCT's permutation around its real FFT):
 *
 *   forward:  v[k] = x[2k] (k < ceil(n/2)),  v[n - 1 - k] = x[2k + 1] (k < floor(n/2)),
 *             i.e. v = [x_0, x_2, x_4, ..., x_5, x_3, x_1];
 *   inverse:  x[2k] = v[k],  x[2k + 1] = v[n - 1 - k].
 *
 * A gather with an index vector reads one float per index; here 16 consecutive values are split
 * into 8 even and 8 odd ones in registers (the odd ones reversed) and written as two vectors.
 * Rows are shared among `threads` OpenMP threads.
 * Returns 0.
 */
#include <stdint.h>

#include "blocks.h"

#ifdef SPECTRAL_PEFT_VECTOR
static inline __m256 reversed(__m256 v) { return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0)); }
#endif

int makhoul_forward_f32(const float *x, int64_t ldx, int64_t rows, int64_t n, float *v, int64_t ldv, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && rows * n >= (1 << 16) * threads)
    for (int64_t r = 0; r < rows; r++) {
        const float *s = x + r * ldx;
        float *d = v + r * ldv;
        int64_t k = 0;
#ifdef SPECTRAL_PEFT_VECTOR
        for (; 2 * k + 16 <= n; k += 8) {
            const __m256 a = _mm256_loadu_ps(s + 2 * k), b = _mm256_loadu_ps(s + 2 * k + 8);
            /* shuffle: [a0 a2 b0 b2 | a4 a6 b4 b6]; the 64-bit lane permute puts a's before b's */
            const __m256 even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
            const __m256 odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
            _mm256_storeu_ps(d + k, even);
            _mm256_storeu_ps(d + n - 8 - k, reversed(odd));
        }
#endif
        for (; 2 * k < n; k++) {
            d[k] = s[2 * k];
            if (2 * k + 1 < n) d[n - 1 - k] = s[2 * k + 1];
        }
    }
    return 0;
}

int makhoul_inverse_f32(const float *v, int64_t ldv, int64_t rows, int64_t n, float *x, int64_t ldx, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && rows * n >= (1 << 16) * threads)
    for (int64_t r = 0; r < rows; r++) {
        const float *s = v + r * ldv;
        float *d = x + r * ldx;
        int64_t k = 0;
#ifdef SPECTRAL_PEFT_VECTOR
        for (; 2 * k + 16 <= n; k += 8) {
            const __m256 even = _mm256_loadu_ps(s + k), odd = reversed(_mm256_loadu_ps(s + n - 8 - k));
            const __m256 lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd);
            /* lo = [e0 o0 e1 o1 | e4 o4 e5 o5], hi = [e2 o2 e3 o3 | e6 o6 e7 o7] */
            _mm256_storeu_ps(d + 2 * k, _mm256_permute2f128_ps(lo, hi, 0x20));
            _mm256_storeu_ps(d + 2 * k + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
        }
#endif
        for (; 2 * k < n; k++) {
            d[2 * k] = s[k];
            if (2 * k + 1 < n) d[2 * k + 1] = s[n - 1 - k];
        }
    }
    return 0;
}
