"""``--executor local``: every run in this process, one after another (the default)."""
from __future__ import annotations

from .base import Executor, register_executor


@register_executor("local")
class LocalExecutor(Executor):
    """In-process: the driver's loaded workspace is reused, and a per-step progress bar can be shown."""

    def map(self, fn, setup, runs, on_step=None):
        for run in runs:
            yield run, fn(setup, run, on_step(run) if on_step else None)
