"""Atomic file replacement: every file a study writes appears whole or not at all.

A study can be interrupted at any moment (Ctrl-C, a killed job, a full disk) and a reader (a
resumed run, another process plotting the folder) must never see half a file, so each writer
writes a temporary file beside the target and then ``os.replace``-s it (atomic on POSIX and
Windows within one file system).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; when the block ends normally it is synced to disk and
    replaces ``path``; on an exception it is deleted and ``path`` is left as it was.

    The temporary name keeps ``path``'s suffix (numpy's ``savez`` and matplotlib look at it).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj, sort_keys: bool = False) -> None:
    """Write ``obj`` as indented JSON (anything JSON cannot encode written as its ``str``) atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=str) + "\n")
