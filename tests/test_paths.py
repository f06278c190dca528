"""cache_root: the one place that reads $SPECTRAL_PEFT_CACHE."""

from __future__ import annotations

from pathlib import Path

from spectral_peft.native import library as native
from spectral_peft.paths import cache_root


def test_the_environment_variable_sets_the_root_and_the_kernel_cache_follows(monkeypatch, tmp_path):
    monkeypatch.setenv("SPECTRAL_PEFT_CACHE", str(tmp_path / "elsewhere"))
    assert cache_root() == tmp_path / "elsewhere"
    assert native.cache_dir() == tmp_path / "elsewhere" / "native"


def test_unset_or_empty_means_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for value in (None, ""):
        if value is None:
            monkeypatch.delenv("SPECTRAL_PEFT_CACHE", raising=False)
        else:
            monkeypatch.setenv("SPECTRAL_PEFT_CACHE", value)
        assert cache_root() == Path(tmp_path) / ".cache" / "spectral_peft"
