"""The executor interface and its registry."""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

from ...registry import Registry

__all__ = ["EXECUTORS", "Executor", "get_executor", "list_executors", "register_executor"]


class Executor:
    """Runs ``fn(setup, run)`` for each run and yields ``(run, row)`` in the order runs finish.

    ``fn`` returns a row even when the run raises (see ``job.execute_run``); an executor turns a
    worker that died or a job that never finished into an error row (``job.failed_row``) with what
    it knows. On an exception in the driver (Ctrl-C, SIGTERM) it cancels the runs not yet finished.
    Its options come from the study's resolved command line (``cfg``: ``ray_address``, ``cpus_per_run``, ...).
    """

    name = "executor"

    def __init__(self, cfg: dict | None = None):
        self.cfg = dict(cfg or {})

    def describe(self) -> dict:
        """What the manifest records about this executor."""
        return {"name": self.name}

    def map(self, fn: Callable, setup, runs: Iterable[dict],
            on_step: Callable[[dict], Callable | None] | None = None) -> Iterator[tuple[dict, dict]]:
        raise NotImplementedError


EXECUTORS: Registry[Executor] = Registry("executor", Executor)


def register_executor(name: str):
    """Class decorator registering an :class:`Executor` subclass as ``name``."""
    return EXECUTORS.register(name)


def get_executor(name: str, cfg: dict) -> Executor:
    """The executor registered as ``name``, configured from the study's resolved options."""
    if name not in EXECUTORS.names():
        raise ValueError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS.names())}")
    return EXECUTORS.get(name, cfg=cfg)


def list_executors() -> list[str]:
    return EXECUTORS.names()
