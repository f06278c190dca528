/* The orthonormal Walsh–Hadamard transform (Sylvester order) along the last dimension of
 * token-major float32 arrays, for spectral_peft.native.wht (the CPU route of
 * spectral_peft.operators.WalshHadamardOp).
 *
 * Sylvester's H_2m = [[H_m, H_m], [H_m, -H_m]] gives the in-place butterfly: for h = 1, 2, 4, ...
 * every pair (i, i + h) inside a group of 2h becomes (s_i + s_(i+h), s_i - s_(i+h)). Two stages run
 * per pass over the signal (radix 4: a group of four values at stride h), and the scale s (1/sqrt(n)
 * for the orthonormal transform) is applied in the last pass.
 *
 * Tokens are walked in blocks of 8, copied feature-major into cache (blocks.h), so that every
 * butterfly is one 8-wide add or subtract across tokens. The result is written token-major
 * (out[t * ldo + f]) or, with transposed != 0, feature-major (out[f * ldo + t]) straight from the
 * block, which saves the caller a transpose of the whole array.
 * Returns 0, -1 if a buffer could not be allocated, -2 for a length that is not a power of two.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks.h"

#define WB 8 /* tokens per block: one AVX2 vector */

#ifdef SPECTRAL_PEFT_VECTOR
typedef __m256 vec;
static inline vec vset(float x) { return _mm256_set1_ps(x); }
static inline vec vload(const float *p) { return _mm256_load_ps(p); }
static inline void vstore(float *p, vec v) { _mm256_store_ps(p, v); }
static inline void vstoreu(float *p, vec v) { _mm256_storeu_ps(p, v); }
static inline vec vadd(vec a, vec b) { return _mm256_add_ps(a, b); }
static inline vec vsub(vec a, vec b) { return _mm256_sub_ps(a, b); }
static inline vec vmul(vec a, vec b) { return _mm256_mul_ps(a, b); }
#else
typedef struct { float v[WB]; } vec;
static inline vec vset(float x) { vec r; for (int t = 0; t < WB; t++) r.v[t] = x; return r; }
static inline vec vload(const float *p) { vec r; memcpy(r.v, p, sizeof r.v); return r; }
static inline void vstore(float *p, vec v) { memcpy(p, v.v, sizeof v.v); }
static inline void vstoreu(float *p, vec v) { memcpy(p, v.v, sizeof v.v); }
static inline vec vadd(vec a, vec b) { for (int t = 0; t < WB; t++) a.v[t] += b.v[t]; return a; }
static inline vec vsub(vec a, vec b) { for (int t = 0; t < WB; t++) a.v[t] -= b.v[t]; return a; }
static inline vec vmul(vec a, vec b) { for (int t = 0; t < WB; t++) a.v[t] *= b.v[t]; return a; }
#endif

/* Stages h and 2h on the block (n features of WB floats), times scale. */
static void radix4_pass(float *restrict buf, int64_t n, int64_t h, vec scale) {
    for (int64_t g = 0; g < n; g += 4 * h)
        for (int64_t i = g; i < g + h; i++) {
            float *p0 = buf + i * WB, *p1 = p0 + h * WB, *p2 = p1 + h * WB, *p3 = p2 + h * WB;
            const vec a = vload(p0), b = vload(p1), c = vload(p2), d = vload(p3);
            const vec s = vadd(a, b), t = vsub(a, b), u = vadd(c, d), v = vsub(c, d);
            vstore(p0, vmul(vadd(s, u), scale));
            vstore(p1, vmul(vadd(t, v), scale));
            vstore(p2, vmul(vsub(s, u), scale));
            vstore(p3, vmul(vsub(t, v), scale));
        }
}

/* Stage h alone (for an odd number of stages), times scale. */
static void radix2_pass(float *restrict buf, int64_t n, int64_t h, vec scale) {
    for (int64_t g = 0; g < n; g += 2 * h)
        for (int64_t i = g; i < g + h; i++) {
            float *p0 = buf + i * WB, *p1 = p0 + h * WB;
            const vec a = vload(p0), b = vload(p1);
            vstore(p0, vmul(vadd(a, b), scale));
            vstore(p1, vmul(vsub(a, b), scale));
        }
}

/* The butterflies of one block (n features of WB tokens) in place, times scale. */
static void transform_block(float *restrict buf, int64_t n, int stages, vec one, vec last, float scale) {
    int64_t h = 1;
    int left = stages;
    if (left % 2) radix2_pass(buf, n, h, left == 1 ? last : one), h *= 2, left--;
    for (; left; left -= 2, h *= 4) radix4_pass(buf, n, h, left == 2 ? last : one);
    if (stages == 0)
        for (int64_t i = 0; i < WB; i++) buf[i] *= scale;
}

/* Token blocks gathered before a transposed write: up to 8 blocks (64 tokens, a whole 256-byte run
 * of each output row) as long as they fit in about 256 KiB. */
static int64_t group_blocks(int64_t n) {
    int64_t g = (int64_t)(256 * 1024 / (sizeof(float) * WB)) / n;
    return g < 1 ? 1 : g > 8 ? 8 : g;
}

int wht_f32(const float *x, int64_t ldx, int64_t tokens, int64_t n, float scale, float *out, int64_t ldo,
            int transposed, int threads) {
    if (n < 1 || (n & (n - 1))) return -2;
    const int64_t group = transposed ? group_blocks(n) : 1, span = group * WB;
    const int64_t spans = (tokens + span - 1) / span;
    int stages = 0;
    while (((int64_t)1 << stages) < n) stages++;
    const vec one = vset(1.0f), last = vset(scale);
    int status = 0;
#pragma omp parallel num_threads(threads) if (threads > 1 && spans * group >= MIN_BLOCKS_PER_THREAD * threads)
    {
        float *buf = aligned_alloc(32, sizeof(float) * (size_t)(span * n));
        if (!buf) {
#pragma omp atomic write
            status = -1;
        }
#pragma omp for schedule(static)
        for (int64_t s = 0; s < spans; s++) {
            if (!buf) continue;
            const int64_t t0 = s * span, count = tokens - t0 < span ? tokens - t0 : span;
            for (int64_t b = 0; b * WB < count; b++) {
                const int64_t rows = count - b * WB < WB ? count - b * WB : WB;
                float *block = buf + b * WB * n;
                load_block(x + (t0 + b * WB) * ldx, ldx, rows, n, block, WB);
                transform_block(block, n, stages, one, last, scale);
                if (!transposed) store_block(block, WB, rows, n, out + (t0 + b * WB) * ldo, ldo);
            }
            if (transposed)  /* out[f, t0 + b*WB + i] = block b's feature f, token i */
                for (int64_t f = 0; f < n; f++) {
                    float *row = out + f * ldo + t0;
                    int64_t b = 0;
                    for (; (b + 1) * WB <= count; b++) vstoreu(row + b * WB, vload(buf + (b * n + f) * WB));
                    if (b * WB < count) memcpy(row + b * WB, buf + (b * n + f) * WB, sizeof(float) * (size_t)(count - b * WB));
                }
        }
        free(buf);
    }
    return status;
}
