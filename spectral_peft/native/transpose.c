/* The transpose of a row-major float32 matrix, for spectral_peft.native.transpose (the 2-D build
 * of ΔW transposes one dense intermediate between its two 1-D transforms).
 *
 *   dst[c * ldd + r] = src[r * lds + c]      (r < rows, c < cols)
 *
 * Tiles of TILE x TILE are moved as 8 x 8 register transposes (blocks.h), so that both the rows
 * read and the rows written stay in cache for a whole tile; row tiles are shared among `threads`
 * OpenMP threads. Returns 0.
 */
#include <stdint.h>

#include "blocks.h"

#define TILE 32

int transpose_f32(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd, int threads) {
    const int64_t row_tiles = (rows + TILE - 1) / TILE;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && rows * cols >= (1 << 16) * threads)
    for (int64_t tile = 0; tile < row_tiles; tile++) {
        const int64_t r0 = tile * TILE, r1 = r0 + TILE < rows ? r0 + TILE : rows;
        for (int64_t c0 = 0; c0 < cols; c0 += TILE) {
            const int64_t c1 = c0 + TILE < cols ? c0 + TILE : cols;
            int64_t r = r0;
#ifdef SPECTRAL_PEFT_VECTOR
            for (; r + 8 <= r1; r += 8) {
                int64_t c = c0;
                for (; c + 8 <= c1; c += 8) transpose8(src + r * lds + c, lds, dst + c * ldd + r, ldd);
                for (; c < c1; c++)
                    for (int i = 0; i < 8; i++) dst[c * ldd + r + i] = src[(r + i) * lds + c];
            }
#endif
            for (; r < r1; r++)
                for (int64_t c = c0; c < c1; c++) dst[c * ldd + r] = src[r * lds + c];
        }
    }
    return 0;
}
