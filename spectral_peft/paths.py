"""Where spectral_peft keeps what it builds once and reuses (compiled kernels, converted models)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$SPECTRAL_PEFT_CACHE`` if set and not empty, else ``~/.cache/spectral_peft``."""
    return Path(os.environ.get("SPECTRAL_PEFT_CACHE") or Path.home() / ".cache" / "spectral_peft")
