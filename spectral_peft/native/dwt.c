/* The periodized orthogonal DWT cascade along the last dimension of token-major float32 arrays,
 * for spectral_peft.native.dwt (the fast route of spectral_peft.operators.WaveletCascadeOp).
 *
 * One level of a signal s of even length L, with the reversed decomposition filters lo, hi of
 * length F (PyWavelets' periodization; shift = 1 - F/2):
 *
 *   a[k] = sum_i lo[i] s[(shift + 2k + i) mod L],   d[k] = sum_i hi[i] s[(shift + 2k + i) mod L],
 *
 * and level j + 1 transforms a_j. Analysis writes a_j[k] and d_j[k] of every level to the output
 * columns positions[off_j + k] and positions[off_j + L_j/2 + k] (off_j = sum of the earlier
 * lengths L_i = n >> i); other columns are zero. Synthesis is its adjoint (the levels are
 * orthogonal): from the deepest level out, s_j = A_j^T [z(a_j) + s_(j+1) | z(d_j)], written as a gather,
 *
 *   s[m] = sum over i with (m - shift - i) even: lo[i] a[k] + hi[i] d[k],  k = (m - shift - i)/2 mod L/2.
 *
 * Tokens (the rows) are walked in blocks of 8, copied feature-major into cache (blocks.h), so that
 * every filter tap is one 8-wide multiply-add across tokens and no index arithmetic is per token.
 * The blocks are shared among `threads` OpenMP threads (each with its own buffers).
 * Returns 0, or -1 if a buffer could not be allocated (the caller then uses its torch route).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks.h"

#define DB 8 /* tokens per block: one AVX2 vector */
#define MAX_TAPS 128
#define MAX_LEVELS 62

#ifdef SPECTRAL_PEFT_VECTOR
typedef __m256 vec;
static inline vec vzero(void) { return _mm256_setzero_ps(); }
static inline vec vset(float x) { return _mm256_set1_ps(x); }
static inline vec vload(const float *p) { return _mm256_load_ps(p); }
static inline void vstore(float *p, vec v) { _mm256_store_ps(p, v); }
static inline vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline vec vadd(vec a, vec b) { return _mm256_add_ps(a, b); }
#else
typedef struct { float v[DB]; } vec;
static inline vec vzero(void) { vec r = {{0}}; return r; }
static inline vec vset(float x) { vec r; for (int t = 0; t < DB; t++) r.v[t] = x; return r; }
static inline vec vload(const float *p) { vec r; memcpy(r.v, p, sizeof r.v); return r; }
static inline void vstore(float *p, vec v) { memcpy(p, v.v, sizeof v.v); }
static inline vec vfma(vec a, vec b, vec c) { for (int t = 0; t < DB; t++) c.v[t] += a.v[t] * b.v[t]; return c; }
static inline vec vadd(vec a, vec b) { for (int t = 0; t < DB; t++) a.v[t] += b.v[t]; return a; }
#endif

static inline int64_t wrap(int64_t i, int64_t L) {
    i %= L;
    return i < 0 ? i + L : i;
}

static inline float *alloc_block(int64_t features) { return aligned_alloc(32, sizeof(float) * DB * (size_t)(features + 1)); }

/* One analysis level of the feature-major block sig (L features); a and d go to out at apos/dpos,
 * and a also to next (the next level's signal) unless next is NULL. */
static void analysis_level(const float *restrict sig, int64_t L, const vec *vlo, const vec *vhi, int taps, int shift,
                           const int32_t *apos, const int32_t *dpos, float *restrict out, float *restrict next) {
    const int64_t half = L / 2;
    int64_t k = 0;
    for (; k < half; k++) {
        const int64_t start = shift + 2 * k;
        if (start >= 0 && k + 4 <= half && start + 6 + taps <= L) {  /* four windows, none wrapping */
            const float *s = sig + start * DB;
            vec a0 = vzero(), a1 = a0, a2 = a0, a3 = a0, d0 = a0, d1 = a0, d2 = a0, d3 = a0;
            for (int i = 0; i < taps; i++) {
                const vec v0 = vload(s + i * DB), v1 = vload(s + (i + 2) * DB);
                const vec v2 = vload(s + (i + 4) * DB), v3 = vload(s + (i + 6) * DB);
                a0 = vfma(vlo[i], v0, a0), d0 = vfma(vhi[i], v0, d0);
                a1 = vfma(vlo[i], v1, a1), d1 = vfma(vhi[i], v1, d1);
                a2 = vfma(vlo[i], v2, a2), d2 = vfma(vhi[i], v2, d2);
                a3 = vfma(vlo[i], v3, a3), d3 = vfma(vhi[i], v3, d3);
            }
            const vec a[4] = {a0, a1, a2, a3}, d[4] = {d0, d1, d2, d3};
            for (int u = 0; u < 4; u++) {
                vstore(out + (int64_t)apos[k + u] * DB, a[u]);
                vstore(out + (int64_t)dpos[k + u] * DB, d[u]);
                if (next) vstore(next + (k + u) * DB, a[u]);
            }
            k += 3;
            continue;
        }
        vec a = vzero(), d = vzero();
        for (int i = 0; i < taps; i++) {
            const vec v = vload(sig + wrap(start + i, L) * DB);
            a = vfma(vlo[i], v, a), d = vfma(vhi[i], v, d);
        }
        vstore(out + (int64_t)apos[k] * DB, a);
        vstore(out + (int64_t)dpos[k] * DB, d);
        if (next) vstore(next + k * DB, a);
    }
}

/* The filters of one parity of the output in synthesis: s[2r + par] = sum_u lo_u a[r + K - u] + hi_u d[r + K - u]. */
typedef struct {
    vec lo[MAX_TAPS / 2 + 1], hi[MAX_TAPS / 2 + 1];
    int count, K;
} phase_t;

static void synthesis_level(const float *restrict a, const float *restrict d, int64_t L, const phase_t *ph,
                            float *restrict sig) {
    const int64_t half = L / 2;
    int64_t first = 0, last = half;  /* r in [first, last): no window of either parity wraps */
    for (int par = 0; par < 2; par++) {
        if (ph[par].count - 1 - ph[par].K > first) first = ph[par].count - 1 - ph[par].K;
        if (half - ph[par].K < last) last = half - ph[par].K;
    }
    for (int64_t r = 0; r < half; r++) {
        if (r >= first && r + 2 <= last && ph[0].count == ph[1].count) {  /* outputs 2r .. 2r + 3 */
            const float *a0 = a + (r + ph[0].K) * DB, *d0 = d + (r + ph[0].K) * DB;
            const float *a1 = a + (r + ph[1].K) * DB, *d1 = d + (r + ph[1].K) * DB;
            vec e0 = vzero(), e1 = e0, f0 = e0, f1 = e0, g0 = e0, g1 = e0, h0 = e0, h1 = e0;
            for (int u = 0; u < ph[0].count; u++) {
                const int64_t o = -u * DB;
                e0 = vfma(ph[0].lo[u], vload(a0 + o), e0), e1 = vfma(ph[0].hi[u], vload(d0 + o), e1);
                f0 = vfma(ph[1].lo[u], vload(a1 + o), f0), f1 = vfma(ph[1].hi[u], vload(d1 + o), f1);
                g0 = vfma(ph[0].lo[u], vload(a0 + o + DB), g0), g1 = vfma(ph[0].hi[u], vload(d0 + o + DB), g1);
                h0 = vfma(ph[1].lo[u], vload(a1 + o + DB), h0), h1 = vfma(ph[1].hi[u], vload(d1 + o + DB), h1);
            }
            vstore(sig + (2 * r) * DB, vadd(e0, e1));
            vstore(sig + (2 * r + 1) * DB, vadd(f0, f1));
            vstore(sig + (2 * r + 2) * DB, vadd(g0, g1));
            vstore(sig + (2 * r + 3) * DB, vadd(h0, h1));
            r++;
            continue;
        }
        for (int par = 0; par < 2; par++) {
            vec s0 = vzero(), s1 = vzero();
            for (int u = 0; u < ph[par].count; u++) {
                const int64_t k = wrap(r + ph[par].K - u, half);
                s0 = vfma(ph[par].lo[u], vload(a + k * DB), s0);
                s1 = vfma(ph[par].hi[u], vload(d + k * DB), s1);
            }
            vstore(sig + (2 * r + par) * DB, vadd(s0, s1));
        }
    }
}

static int bad_arguments(int64_t n, int levels, int taps) {
    if (taps < 2 || taps > MAX_TAPS || taps % 2 || levels < 1 || levels > MAX_LEVELS) return 1;
    for (int j = 0; j < levels; j++)
        if ((n >> j) % 2 || (n >> j) << j != n) return 1;
    return 0;
}

int dwt_analysis_f32(const float *x, int64_t ldx, int64_t tokens, int64_t n, int levels, const float *lo,
                     const float *hi, int taps, const int32_t *positions, int64_t width, float *out, int64_t ldo,
                     int threads) {
    if (bad_arguments(n, levels, taps)) return -2;
    vec vlo[MAX_TAPS], vhi[MAX_TAPS];
    for (int i = 0; i < taps; i++) vlo[i] = vset(lo[i]), vhi[i] = vset(hi[i]);
    const int shift = 1 - taps / 2;
    const int64_t blocks = (tokens + DB - 1) / DB;
    int status = 0;
#pragma omp parallel num_threads(threads) if (threads > 1 && blocks >= MIN_BLOCKS_PER_THREAD * threads)
    {
        float *in = alloc_block(n), *spare = alloc_block(n / 2), *block = alloc_block(width);
        const int ok = in && spare && block;
        if (ok)
            memset(block, 0, sizeof(float) * DB * (size_t)width);  /* columns outside positions stay zero */
        else {
#pragma omp atomic write
            status = -1;
        }
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            if (!ok) continue;
            const int64_t t0 = b * DB, rows = tokens - t0 < DB ? tokens - t0 : DB;
            load_block(x + t0 * ldx, ldx, rows, n, in, DB);
            const int32_t *pos = positions;
            float *sig = in, *other = spare;  /* level j reads sig (n >> j long) and writes a_j to other */
            for (int j = 0; j < levels; j++) {
                const int64_t L = n >> j;
                float *next = j + 1 < levels ? other : NULL;
                analysis_level(sig, L, vlo, vhi, taps, shift, pos, pos + L / 2, block, next);
                pos += L;
                other = sig, sig = next;
            }
            store_block(block, DB, rows, width, out + t0 * ldo, ldo);
        }
        free(in), free(spare), free(block);
    }
    return status;
}

int dwt_synthesis_f32(const float *z, int64_t ldz, int64_t tokens, int64_t n, int levels, const float *lo,
                      const float *hi, int taps, const int32_t *positions, int64_t width, float *x, int64_t ldx,
                      int threads) {
    if (bad_arguments(n, levels, taps)) return -2;
    phase_t *ph = aligned_alloc(32, sizeof(phase_t) * 2);
    if (!ph) return -1;
    const int shift = 1 - taps / 2;
    for (int par = 0; par < 2; par++) {
        const int i0 = ((par - shift) % 2 + 2) % 2;
        ph[par].K = (par - shift - i0) / 2;
        ph[par].count = 0;
        for (int i = i0; i < taps; i += 2, ph[par].count++)
            ph[par].lo[ph[par].count] = vset(lo[i]), ph[par].hi[ph[par].count] = vset(hi[i]);
    }
    int64_t offsets[MAX_LEVELS];
    offsets[0] = 0;
    for (int j = 1; j < levels; j++) offsets[j] = offsets[j - 1] + (n >> (j - 1));
    const int64_t blocks = (tokens + DB - 1) / DB;
    int status = 0;
#pragma omp parallel num_threads(threads) if (threads > 1 && blocks >= MIN_BLOCKS_PER_THREAD * threads)
    {
        float *block = alloc_block(width), *a = alloc_block(n / 2), *d = alloc_block(n / 2), *sig = alloc_block(n);
        const int ok = block && a && d && sig;
        if (!ok) {
#pragma omp atomic write
            status = -1;
        }
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            if (!ok) continue;
            const int64_t t0 = b * DB, rows = tokens - t0 < DB ? tokens - t0 : DB;
            load_block(z + t0 * ldz, ldz, rows, width, block, DB);
            for (int j = levels - 1; j >= 0; j--) {
                const int64_t half = (n >> j) / 2;
                const int32_t *apos = positions + offsets[j], *dpos = apos + half;
                for (int64_t k = 0; k < half; k++) {  /* a_j: its coefficients plus the deeper levels' synthesis */
                    vec v = vload(block + (int64_t)apos[k] * DB);
                    if (j + 1 < levels) v = vadd(v, vload(sig + k * DB));
                    vstore(a + k * DB, v);
                    vstore(d + k * DB, vload(block + (int64_t)dpos[k] * DB));
                }
                synthesis_level(a, d, n >> j, ph, sig);
            }
            store_block(sig, DB, rows, n, x + t0 * ldx, ldx);
        }
        free(block), free(a), free(d), free(sig);
    }
    free(ph);
    return status;
}

/* One synthesis level along the rows of a row-major matrix (the columns' transform, dim -2): z has
 * `length` rows, a = rows [0, length/2) and d = rows [length/2, length), each `width` floats (row
 * stride ldz); output row m = 2r + par is the row combination
 *
 *   out[m] = sum_u lo_u a[(r + K - u) mod half] + hi_u d[(r + K - u) mod half]
 *
 * with the phase filters of synthesis_level. Rows are whole vectors here, so every tap is one
 * multiply-add over a contiguous row (no transposes); the output rows are shared among threads. */
int dwt_synthesis_rows_f32(const float *z, int64_t ldz, int64_t length, int64_t width, const float *lo,
                           const float *hi, int taps, float *out, int64_t ldo, int threads) {
    if (taps < 2 || taps > MAX_TAPS || taps % 2 || length < 2 || length % 2) return -2;
    const int64_t half = length / 2;
    const int shift = 1 - taps / 2;
    float plo[2][MAX_TAPS / 2 + 1], phi[2][MAX_TAPS / 2 + 1];
    int count[2], K[2];
    for (int par = 0; par < 2; par++) {
        const int i0 = ((par - shift) % 2 + 2) % 2;
        K[par] = (par - shift - i0) / 2;
        count[par] = 0;
        for (int i = i0; i < taps; i += 2, count[par]++) plo[par][count[par]] = lo[i], phi[par][count[par]] = hi[i];
    }
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && length * width >= (1 << 16) * threads)
    for (int64_t m = 0; m < length; m++) {
        const int par = (int)(m & 1);
        const int64_t r = m >> 1;
        float *restrict o = out + m * ldo;
        for (int u = 0; u < count[par]; u++) {
            const int64_t k = wrap(r + K[par] - u, half);
            const float *restrict a = z + k * ldz, *restrict d = z + (half + k) * ldz;
            const float cl = plo[par][u], ch = phi[par][u];
            if (u == 0)
                for (int64_t j = 0; j < width; j++) o[j] = cl * a[j] + ch * d[j];
            else
                for (int64_t j = 0; j < width; j++) o[j] += cl * a[j] + ch * d[j];
        }
    }
    return 0;
}
