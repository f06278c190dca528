"""``--executor slurm``: each run a SLURM job through submitit (its local executor stands in for tests)."""
from __future__ import annotations

import time
from pathlib import Path

from .base import Executor, register_executor


@register_executor("slurm")
class SlurmExecutor(Executor):
    """One submitit job per ``runs_per_job`` runs, at most ``max_jobs`` jobs in flight (0: all at once).

    Options: ``slurm_partition``, ``slurm_time`` (minutes per job), ``slurm_account``,
    ``gpus_per_run``, ``cpus_per_run``, ``max_jobs``, ``runs_per_job`` (several short runs per job
    save the start-up of a Python process with torch and transformers, and the model load).
    ``slurm_cluster="local"`` uses submitit's ``LocalExecutor`` (subprocesses on this machine, for
    tests and dry runs). Job logs and pickles go to ``<out>/submitit``.
    """

    def __init__(self, cfg: dict | None = None):
        super().__init__(cfg)
        try:
            import submitit  # noqa: F401
        except ImportError as e:
            raise ImportError("--executor slurm needs submitit: pip install 'spectral_peft[cluster]'") from e
        c = self.cfg
        self.cluster = c.get("slurm_cluster") or "slurm"
        if self.cluster not in ("slurm", "local"):
            raise ValueError(f"--slurm-cluster {self.cluster!r}: choose slurm or local")
        self.folder = Path(c.get("out") or ".") / "submitit"
        self.partition, self.account = c.get("slurm_partition"), c.get("slurm_account")
        self.time_min = int(c.get("slurm_time") or 60)
        self.gpus_per_run, self.cpus_per_run = int(c.get("gpus_per_run") or 0), int(c.get("cpus_per_run") or 1)
        self.max_jobs, self.poll_s = int(c.get("max_jobs") or 0), 0.5
        self.runs_per_job = max(1, int(c.get("runs_per_job") or 1))

    def describe(self):
        import submitit

        return {"name": self.name, "cluster": self.cluster, "partition": self.partition, "time_min": self.time_min,
                "gpus_per_run": self.gpus_per_run, "cpus_per_run": self.cpus_per_run, "account": self.account,
                "max_jobs": self.max_jobs, "runs_per_job": self.runs_per_job, "folder": str(self.folder), "submitit": submitit.__version__}

    def _executor(self):
        import submitit

        if self.cluster == "local":
            ex = submitit.LocalExecutor(folder=self.folder / "%j")
            ex.update_parameters(timeout_min=self.time_min, gpus_per_node=self.gpus_per_run)
            return ex
        ex = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm")
        params = dict(timeout_min=self.time_min, cpus_per_task=self.cpus_per_run, tasks_per_node=1, nodes=1,
                      name="spectral_peft")
        if self.gpus_per_run:
            params["gpus_per_node"] = self.gpus_per_run
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.account:
            params["slurm_account"] = self.account
        ex.update_parameters(**params)
        return ex

    def map(self, fn, setup, runs, on_step=None):
        from ..job import execute_runs, failed_row

        ex = self._executor()
        runs = list(runs)
        queue = [runs[i:i + self.runs_per_job] for i in range(0, len(runs), self.runs_per_job)]
        single = self.runs_per_job == 1
        running: list = []
        try:
            while queue or running:
                while queue and (not self.max_jobs or len(running) < self.max_jobs):
                    chunk = queue.pop(0)
                    job = ex.submit(fn, setup, chunk[0]) if single else ex.submit(execute_runs, setup, chunk)
                    running.append((job, chunk))
                finished = [(job, chunk) for job, chunk in running if job.done()]
                if not finished:
                    time.sleep(self.poll_s)
                    continue
                for job, chunk in finished:
                    running.remove((job, chunk))
                    try:
                        result = job.result()
                        rows = [result] if single else result
                    except Exception as e:  # the job failed, was killed or timed out
                        text = (f"{e}\n(job {job.job_id}; logs in {job.paths.folder})\n"
                                f"{type(e).__name__}: job {job.job_id} did not return its rows")
                        rows = [failed_row(run, text) for run in chunk]
                    yield from zip(chunk, rows)
        finally:
            for job, _ in running:
                try:
                    job.cancel(check=False)
                except Exception:  # pragma: no cover - best effort on the way out
                    pass
