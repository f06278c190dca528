"""Building, caching and switching off the compiled kernels (spectral_peft.native.library).

Real builds with the machine's C compiler into a temporary cache; the fallbacks when there is no
compiler or the compiler fails; and :func:`usable`'s refusals (autograd, other dtypes and devices).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import time

import pytest
import scipy.linalg
import torch

from spectral_peft.native import library, wht

HAS_COMPILER = library._compiler() is not None
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="needs a C compiler: this test checks the build itself")


def test_builds_one_library_with_every_kernel_where_a_compiler_exists(fresh_build):
    assert library.available() is HAS_COMPILER
    built = list(fresh_build.glob(f"{library.LIBRARY_NAME}-*.so"))
    assert len(built) == (1 if HAS_COMPILER else 0)
    if HAS_COMPILER:
        assert {p.name for p in library.sources()} == {"sampled_product.c", "spread.c", "dwt.c", "wht.c", "reorder.c", "transpose.c"}
        for name in ("sampled_product_f32", "dwt_analysis_f32", "dwt_synthesis_f32", "dwt_synthesis_rows_f32", "wht_f32", "makhoul_forward_f32", "makhoul_inverse_f32", "transpose_f32", "spread_f32"):
            assert isinstance(getattr(library.load(), name), ctypes._CFuncPtr)


def test_without_a_compiler_nothing_is_built_and_it_is_said(fresh_build, monkeypatch, caplog):
    monkeypatch.setattr(library, "_compiler", lambda: None)
    with caplog.at_level(logging.INFO, logger=library.__name__):
        assert not library.available()
    assert "no C compiler" in caplog.text
    assert not library.handles("cpu", torch.float32)


def test_a_failing_compiler_is_reported_and_falls_back(fresh_build, monkeypatch, caplog):
    monkeypatch.setenv("CC", "false")  # exists, and fails
    with caplog.at_level(logging.WARNING, logger=library.__name__):
        assert not library.available()
    assert "could not build the native kernels" in caplog.text
    assert not list(fresh_build.glob("*.so"))


@needs_compiler
def test_where_torch_runs_on_gnu_openmp_the_kernels_share_its_runtime(fresh_build):
    assert library.available()
    (built,) = fresh_build.glob(f"{library.LIBRARY_NAME}-*.so")
    uses_openmp = b"GOMP_parallel" in built.read_bytes()  # the symbol -fopenmp's parallel regions call
    assert uses_openmp is library.torch_uses_gnu_openmp()
    if uses_openmp:  # one OpenMP runtime in the process: torch's, so one pool of worker threads
        runtimes = {line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line}
        assert len(runtimes) == 1, runtimes


@needs_compiler
def test_a_compiler_without_openmp_builds_the_kernels_without_it(fresh_build, monkeypatch, tmp_path):
    fake = tmp_path / "cc-without-openmp"
    fake.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do [ "$arg" = -fopenmp ] && { echo "unsupported option -fopenmp" >&2; exit 1; }; done\n'
        f'exec {library._compiler()} "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    assert library.available()
    (built,) = fresh_build.glob(f"{library.LIBRARY_NAME}-*.so")
    assert b"GOMP_parallel" not in built.read_bytes()
    x = torch.randn(100, 64)  # and a kernel from that build still computes the transform
    expected = x @ torch.tensor(scipy.linalg.hadamard(64), dtype=torch.float32) * 0.125
    torch.testing.assert_close(wht.hadamard(x, 0.125), expected, rtol=1e-5, atol=1e-5)


@needs_compiler
@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork exists only on POSIX systems")
def test_a_forked_child_runs_the_kernels_on_one_thread_instead_of_hanging():
    """GNU OpenMP's workers do not survive a fork: a parallel region in the child would wait forever."""
    x = torch.randn(4096, 256)
    parent = wht.hadamard(x, 0.0625)  # a parallel region in the parent first (where there is OpenMP)
    pid = os.fork()
    if pid == 0:  # the child: no pytest, and no torch op that would go parallel itself (and hang)
        ok = library.threads() == 1 and (wht.hadamard(x, 0.0625).numpy() == parent.numpy()).all()
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's kernel call did not return within 60 s")


def test_switched_off_by_the_environment(monkeypatch):
    for value in ("0", "false", "OFF", " no "):
        monkeypatch.setenv("SPECTRAL_PEFT_NATIVE", value)
        assert not library.enabled() and not library.handles("cpu", torch.float32)
    monkeypatch.setenv("SPECTRAL_PEFT_NATIVE", "1")
    assert library.enabled()


@needs_compiler
def test_a_second_process_reuses_the_built_library(fresh_build, monkeypatch):
    assert library.available()
    (built,) = fresh_build.glob(f"{library.LIBRARY_NAME}-*.so")
    stamp = built.stat().st_mtime_ns
    monkeypatch.setattr(library, "_tried", False)
    monkeypatch.setattr(library, "_library", None)
    monkeypatch.setattr(library.subprocess, "run", _only_version_queries(library.subprocess.run))
    assert library.available()
    assert built.stat().st_mtime_ns == stamp


@needs_compiler
def test_a_changed_source_is_rebuilt(fresh_build, monkeypatch, tmp_path):
    assert library.available()
    source_dir = tmp_path / "sources"
    source_dir.mkdir()
    for path in [*library.sources(), *library.SOURCE_DIR.glob("*.h")]:
        (source_dir / path.name).write_bytes(path.read_bytes())
    (source_dir / "dwt.c").write_text((source_dir / "dwt.c").read_text() + "\n/* changed */\n")
    monkeypatch.setattr(library, "SOURCE_DIR", source_dir)
    monkeypatch.setattr(library, "_tried", False)
    monkeypatch.setattr(library, "_library", None)
    assert library.available()
    assert len(list(fresh_build.glob(f"{library.LIBRARY_NAME}-*.so"))) == 2


@needs_compiler
def test_usable_only_without_autograd_and_for_float32_cpu():
    x = torch.randn(4, 8)
    assert library.usable(x, x)
    assert not library.usable(x.double())
    assert not library.usable(x.bfloat16())
    assert not library.usable(x, x.double())  # one kind for all
    leaf = x.clone().requires_grad_()
    assert not library.usable(leaf)
    with torch.no_grad():
        assert library.usable(leaf)


def _only_version_queries(run):
    def guarded(cmd, *args, **kwargs):
        assert cmd[1:] == ["--version"], f"rebuilt: {cmd}"
        return run(cmd, *args, **kwargs)
    return guarded


def test_int32_indices_are_checked_and_converted_once_per_tensor_and_width():
    import gc
    import weakref

    index = torch.tensor([0, 5, 2, 7])
    first = library.int32_indices(index, 8, "p")
    assert first.dtype == torch.int32 and first.is_contiguous() and torch.equal(first.long(), index)
    assert library.int32_indices(index, 8, "p") is first  # kept: no second check or copy
    with pytest.raises(ValueError, match=r"p must index 0..6, got 0..7"):
        library.int32_indices(index, 7, "p")  # another width is checked again
    index[1] = 9  # an in-place change bumps the version: checked again
    with pytest.raises(ValueError, match=r"q must index 0..7, got 0..9"):
        library.int32_indices(index, 8, "q")
    with pytest.raises(ValueError, match=r"p must index 0..7, got -1..7"):
        library.int32_indices(torch.tensor([-1, 7]), 8, "p")
    already = torch.tensor([3, 1], dtype=torch.int32)
    assert library.int32_indices(already, 4, "p") is already
    assert already in library._checked_indices
    alive = weakref.ref(already)
    del already
    gc.collect()
    assert alive() is None  # the cache keeps no tensor alive ...
    assert all(ref() is not None for ref in library._checked_indices.data)  # ... and no entry of a dead one


def test_int32_indices_made_under_inference_mode_are_checked_on_every_call():
    with torch.inference_mode():
        index = torch.tensor([0, 5, 2])
        assert torch.equal(library.int32_indices(index, 8, "p"), index.int())
        index[1] = 8  # in place, and untracked: no version counter
        with pytest.raises(ValueError, match=r"p must index 0..7, got 0..8"):
            library.int32_indices(index, 8, "p")
    assert index not in library._checked_indices
