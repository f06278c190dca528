"""Forward and inverse 2-D transform time of every registered basis beside a reference implementation.

    python benchmarks/transforms.py              # sizes 384, 1024, 4096 (a few minutes on 2 cores)
    python benchmarks/transforms.py --smoke      # sizes 8 and 16, one repeat (for CI)

References (float32 input, the same matrix for both sides; time of one call, median of repeats):

* dct:            ``scipy.fft.dctn`` / ``idctn`` (norm="ortho")
* dft, dht:       ``numpy.fft.fft2`` / ``ifft2`` (the DHT as Re − Im of the FFT; the real DFT layout
                  as the FFT plus its Hermitian packing, which the reference does not do)
* dht_separable:  ``numpy.fft.fft`` along each axis, Re − Im after each
* wavelet:        ``pywt.wavedec2`` + ``coeffs_to_array`` / ``array_to_coeffs`` + ``waverec2``
                  (mode="periodization", the basis's own wavelet and level)
* identity:       ``numpy.copy``
* other bases:    none (ratio left empty)

``fast inverse`` is the adapter's own ΔW builder (``AdapterPlan.delta``, through the basis's
factorization: the 1-D operators, or the wavelet pyramid as banded matmuls), which the merged
route uses instead of ``basis.inverse``; timed for n = 1000 coefficients. Ratios are ours /
reference (below 1: ours is faster). torch runs on one thread by default, like the numpy, scipy
and pywt references.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from spectral_peft import get_basis, list_bases  # noqa: E402
from spectral_peft.fastpath import AdapterPlan  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up (plans, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _references(name: str, basis, a: np.ndarray):
    """(forward, inverse) reference callables on the numpy array ``a``, or None."""
    import scipy.fft

    if name == "dct":
        return (lambda: scipy.fft.dctn(a, norm="ortho"), lambda: scipy.fft.idctn(a, norm="ortho"))
    if name in ("dft", "dht"):
        def fwd():
            f = np.fft.fft2(a, norm="ortho")
            return f.real - f.imag

        def inv():
            f = np.fft.ifft2(a, norm="ortho")
            return f.real + f.imag

        return fwd, inv
    if name == "dht_separable":
        def sep():
            f = np.fft.fft(a, axis=0, norm="ortho")
            f = np.fft.fft(f.real - f.imag, axis=1, norm="ortho")
            return f.real - f.imag

        return sep, sep
    if name == "wavelet":
        import pywt

        warnings.filterwarnings("ignore", message="Level value", category=UserWarning)  # tiny smoke sizes
        level = basis.levels_for(*a.shape)
        coeffs = pywt.wavedec2(a, basis.wavelet, mode="periodization", level=level)
        array, slices = pywt.coeffs_to_array(coeffs)

        def fwd():
            return pywt.coeffs_to_array(pywt.wavedec2(a, basis.wavelet, mode="periodization", level=level))[0]

        def inv():
            parts = pywt.array_to_coeffs(array, slices, output_format="wavedec2")
            return pywt.waverec2(parts, basis.wavelet, mode="periodization")

        return fwd, inv
    if name == "identity":
        return (lambda: np.copy(a), lambda: np.copy(a))
    return None


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="comma-separated square sizes (default 384,1024,4096)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per entry (default 5; smoke 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, like the references)")
    parser.add_argument("--csv", default=str(ROOT / "runs" / "benchmarks" / "transforms.csv"))
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in (args.sizes or ("8,16" if args.smoke else "384,1024,4096")).split(",")]
    repeats = args.repeats or (1 if args.smoke else 5)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; median of {repeats}; times in ms"
    )
    header = (
        f"{'basis':<15}{'size':>6}{'forward':>10}{'ref':>10}{'ratio':>7}{'inverse':>10}{'ref':>10}{'ratio':>7}"
        f"{'fast ΔW':>10}{'ratio':>7}"
    )
    print(header)
    rows = []
    for size in sizes:
        w = torch.randn(size, size, generator=torch.Generator().manual_seed(0))
        a = w.numpy()
        for name in list_bases():
            basis = get_basis(name)
            try:
                basis.check_shape(size, size)
            except ValueError:
                continue
            fwd = _median_time(lambda: basis.forward(w), repeats)
            inv = _median_time(lambda: basis.inverse(w), repeats)
            refs = _references(name, basis, a)
            ref_fwd = _median_time(refs[0], repeats) if refs else None
            ref_inv = _median_time(refs[1], repeats) if refs else None
            n = min(size * size, 1000)
            positions = torch.randperm(size * size, generator=torch.Generator().manual_seed(1))[:n]
            factorization = basis.factorization(size, size, positions)
            fast = None
            if factorization is not None:
                plan = AdapterPlan(factorization, n, w.device, w.dtype)
                c = torch.randn(n, generator=torch.Generator().manual_seed(2))
                fast = _median_time(lambda: plan.delta(c, 1.0, positions), repeats)
            row = {
                "basis": name,
                "size": size,
                "forward_ms": 1e3 * fwd,
                "ref_forward_ms": None if ref_fwd is None else 1e3 * ref_fwd,
                "forward_ratio": None if ref_fwd is None else fwd / ref_fwd,
                "inverse_ms": 1e3 * inv,
                "ref_inverse_ms": None if ref_inv is None else 1e3 * ref_inv,
                "inverse_ratio": None if ref_inv is None else inv / ref_inv,
                "fast_inverse_ms": None if fast is None else 1e3 * fast,
                "fast_inverse_ratio": None if (fast is None or ref_inv is None) else fast / ref_inv,
            }
            rows.append(row)

            def fmt(v, width, digits):
                return f"{'':>{width}}" if v is None else f"{v:>{width}.{digits}f}"

            print(
                f"{name:<15}{size:>6}{fmt(row['forward_ms'], 10, 2)}{fmt(row['ref_forward_ms'], 10, 2)}"
                f"{fmt(row['forward_ratio'], 7, 2)}{fmt(row['inverse_ms'], 10, 2)}{fmt(row['ref_inverse_ms'], 10, 2)}"
                f"{fmt(row['inverse_ratio'], 7, 2)}{fmt(row['fast_inverse_ms'], 10, 2)}{fmt(row['fast_inverse_ratio'], 7, 2)}",
                flush=True,
            )
    if args.csv:
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (round(v, 4) if isinstance(v, float) else ("" if v is None else v)) for k, v in row.items()})
        print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
