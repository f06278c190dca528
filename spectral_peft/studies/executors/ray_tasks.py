"""``--executor ray``: each run a Ray task, on a cluster (``--ray-address``) or a local Ray."""
from __future__ import annotations

import signal
import threading
import traceback

from .base import Executor, register_executor


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@register_executor("ray")
class RayExecutor(Executor):
    """Ray tasks with ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs each.

    Joins ``ray_address`` (e.g. ``auto`` or ``ray://head:10001``) when given; else uses the Ray already
    initialised in this process, or starts a local one (``ray_num_cpus`` CPUs, no dashboard) and shuts
    it down afterwards. The setup is put in the object store once; each worker process loads the
    model once and keeps it for the runs it gets.
    """

    def __init__(self, cfg: dict | None = None):
        super().__init__(cfg)
        try:
            import ray  # noqa: F401
        except ImportError as e:
            raise ImportError("--executor ray needs Ray: pip install 'spectral_peft[cluster]'") from e
        self.address = self.cfg.get("ray_address")
        self.cpus_per_run = float(self.cfg.get("cpus_per_run") or 1)
        self.gpus_per_run = float(self.cfg.get("gpus_per_run") or 0)
        self.num_cpus = self.cfg.get("ray_num_cpus")

    def describe(self):
        import ray

        return {"name": self.name, "address": self.address, "cpus_per_run": self.cpus_per_run,
                "gpus_per_run": self.gpus_per_run, "ray": ray.__version__}

    def map(self, fn, setup, runs, on_step=None):
        import ray

        started = False
        if not ray.is_initialized():
            # ray.init installs its own SIGTERM handler, which kills the driver outright; put the study's
            # back, so that `kill PID` still stops the study like Ctrl-C (results kept, manifest updated)
            on_sigterm = signal.getsignal(signal.SIGTERM) if _main_thread() else None
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
            started = True
            if on_sigterm is not None:
                signal.signal(signal.SIGTERM, on_sigterm)
        task = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=0)(fn)
        setup_ref = ray.put(setup)
        pending = {task.remote(setup_ref, run): run for run in runs}
        try:
            while pending:
                # a timeout, so that Ctrl-C / SIGTERM reach the driver between waits
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in done:
                    run = pending.pop(ref)
                    try:
                        row = ray.get(ref)
                    except Exception:  # the worker died, or Ray could not run the task
                        from ..job import failed_row

                        row = failed_row(run, traceback.format_exc())
                    yield run, row
        finally:
            if started:
                # shutting the local Ray down stops its workers; cancelling first (force=True) races the
                # tasks that finish meanwhile, and Ray's core worker then aborts on completing a task it
                # had already cancelled ("Tried to complete task that was not pending")
                ray.shutdown()
            else:
                # on a shared cluster: stop only this study's tasks, letting a running one raise
                # KeyboardInterrupt rather than killing its worker
                for ref in pending:
                    ray.cancel(ref, force=False)
