"""Builds and loads the package's C kernels (``*.c`` next to this file) as one shared library.

The sources are compiled on first use with the system C compiler (``$CC``, else ``cc``, ``gcc``
or ``clang``; ``-O3 -march=native``) into ``$SPECTRAL_PEFT_CACHE/native`` (default
``~/.cache/spectral_peft/native``), keyed by the sources, the compiler and the CPU, and loaded with
ctypes. When that is impossible (no compiler, a failing build, another OS) or switched off with
``SPECTRAL_PEFT_NATIVE=0``, :func:`load` gives None and every caller uses its torch route; the
results are the same to float rounding.

Threads: where torch runs its own parallel ops on GNU OpenMP (the Linux wheels, which ship
``libgomp.so.1``), the library is built with ``-fopenmp`` and, loaded after torch, links against
that same runtime, so the kernels' parallel regions run on torch's worker threads
(:func:`threads` of them) instead of a second pool that would compete with torch's spinning
workers for the cores. Elsewhere (or if ``-fopenmp`` does not build) the kernels run on one thread.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch.utils.weak import WeakTensorKeyDictionary

from ..paths import cache_root
from ..tensor_version import version

logger = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).parent
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC")
OPENMP_FLAGS = ("-fopenmp",)
LIBRARY_NAME = "spectral_peft_kernels"

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_tried = False


def enabled() -> bool:
    """False when ``SPECTRAL_PEFT_NATIVE`` is set to 0 / false / no / off."""
    return os.environ.get("SPECTRAL_PEFT_NATIVE", "1").strip().lower() not in {"0", "false", "no", "off"}


def cache_dir() -> Path:
    return cache_root() / "native"


def sources() -> list[Path]:
    """The C sources compiled into the library (headers are part of the cache key)."""
    return sorted(SOURCE_DIR.glob("*.c"))


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_signature() -> str:
    """The CPU's model and feature flags (what ``-march=native`` compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in lines if ln.split(":")[0].strip() in {"model name", "flags", "Features", "CPU part"}]
    return "\n".join(dict.fromkeys(keep))


def torch_uses_gnu_openmp() -> bool:
    """Whether torch's parallel ops run on GNU OpenMP (its ``libgomp`` is loaded in this process)."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return False
    try:
        return "libgomp" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


_forked_child = False


def _mark_forked_child() -> None:
    global _forked_child
    _forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked_child)


def threads() -> int:
    """Threads for a kernel call: torch's intra-op thread count (a library built without OpenMP
    ignores it). 1 in a process forked from another: GNU OpenMP's worker pool does not survive a
    fork, and a parallel region in the child would wait for it forever (torch's own parallel ops
    do; a forked DataLoader worker sets torch to one thread for this reason)."""
    return 1 if _forked_child else torch.get_num_threads()


def _build(compiler: str, flags: tuple[str, ...]) -> Path:
    texts = [p.read_bytes() for p in sources() + sorted(SOURCE_DIR.glob("*.h"))]
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256(b"\0".join([*texts, compiler.encode(), version.encode(), _cpu_signature().encode(), " ".join(flags).encode()]))
    target = cache_dir() / f"{LIBRARY_NAME}-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build next to the target and rename: processes that build at the same time never load a half-written file.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        command = [compiler, *flags, *map(str, sources()), "-o", str(built)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed:\n{result.stderr.strip()}")
        os.replace(built, target)
    return target


def load() -> ctypes.CDLL | None:
    """The loaded library (built on the first call), or None where it cannot be built."""
    global _library, _tried
    if _tried:  # after the first call: no lock on the hot path
        return _library
    with _lock:
        if not _tried:
            _tried = True
            compiler = _compiler()
            if compiler is None:
                logger.info("spectral_peft: no C compiler found; the native kernels are replaced by torch ops")
            else:
                _library = _load_built(compiler)
        return _library


def _load_built(compiler: str) -> ctypes.CDLL | None:
    """The library built with OpenMP where torch uses GNU OpenMP and that builds, else without."""
    attempts = [FLAGS + OPENMP_FLAGS, FLAGS] if torch_uses_gnu_openmp() else [FLAGS]
    for flags in attempts:
        try:
            return ctypes.CDLL(str(_build(compiler, flags)))
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            failure = err
            logger.info("spectral_peft: native kernels with %s did not build (%s)", " ".join(flags), err)
    logger.warning("spectral_peft: could not build the native kernels (%s); using torch ops", failure)
    return None


def available() -> bool:
    """Whether the compiled kernels are in use (builds them on the first call)."""
    return enabled() and load() is not None


def handles(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether arrays on ``device`` in ``dtype`` go to the compiled kernels (float32 on the CPU, when available)."""
    return dtype == torch.float32 and torch.device(device).type == "cpu" and available()


def usable(*tensors: torch.Tensor) -> bool:
    """Whether these tensors can go to a kernel now: :func:`handles` their kind, no autograd graph
    to record (a kernel call is invisible to autograd) and no ``torch.compile`` trace in progress."""
    first = tensors[0]
    if torch.compiler.is_compiling() or not handles(first.device, first.dtype):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return all(t.device == first.device and t.dtype == first.dtype for t in tensors)


def rows(x: torch.Tensor) -> torch.Tensor:
    """x as a 2-D array of its last-dimension rows (leading dimensions flattened) whose rows are
    contiguous, as the kernels read them (a row stride wider than the row is fine); no copy unless needed."""
    flat = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])  # not -1: ambiguous for zero-width rows
    return flat if flat.stride(-1) == 1 else flat.contiguous()


# index -> (the (width, version) it was checked for, its int32 copy or None when it is one already),
# keyed weakly by identity: an entry goes with its tensor.
_checked_indices = WeakTensorKeyDictionary()


def int32_indices(index: torch.Tensor, width: int, name: str) -> torch.Tensor:
    """``index`` as a contiguous int32 tensor, once it is known to lie in 0..width−1: the kernels
    index unchecked, so anything outside raises ValueError (naming ``name``). A route passes the
    same index tensors on every call, so each is checked and converted once per width and kept;
    an in-place change (which bumps the tensor's ``_version``) is checked again. Inference tensors
    (made under ``torch.inference_mode``) have no version counter and are checked on every call."""
    tracked = not index.is_inference()  # an inference tensor has no version counter: checked every call
    key = (width, version(index))
    seen = _checked_indices.get(index) if tracked else None
    if seen is not None and seen[0] == key:
        return index if seen[1] is None else seen[1]
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= width):
        raise ValueError(f"{name} must index 0..{width - 1}, got {int(index.min())}..{int(index.max())}")
    converted = index.to(torch.int32).contiguous()
    if tracked:  # (the value must not hold the key itself, or the entry would keep it alive)
        _checked_indices[index] = (key, None if converted is index else converted)
    return converted


def function(name: str, argtypes: list) -> "ctypes._CFuncPtr":
    """The library's int-returning C function ``name`` with its argument types set (library loaded)."""
    fn = getattr(_library, name)
    if fn.argtypes is None:
        fn.restype, fn.argtypes = ctypes.c_int, argtypes
    return fn
