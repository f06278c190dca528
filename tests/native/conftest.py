from __future__ import annotations

import pytest

from spectral_peft.native import library


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """The library as in a new process, building into an empty cache."""
    monkeypatch.setenv("SPECTRAL_PEFT_CACHE", str(tmp_path))
    monkeypatch.setenv("SPECTRAL_PEFT_NATIVE", "1")
    monkeypatch.setattr(library, "_tried", False)
    monkeypatch.setattr(library, "_library", None)
    return tmp_path / "native"
