"""Where jobs execute, behind a small interface, plus the supervisor that keeps the queue honest.

``ExecutionEngine`` is all the server needs: start, stop, and say whether workers are alive.
``LocalProcessEngine`` runs one worker process per GPU (one on a CPU machine) and restarts any
that die. A Ray engine would implement the same three methods with remote actors that call
``worker_loop``; the store stays the single source of truth either way.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
from typing import Protocol

from dreamer.jobs.config import StudioConfig
from dreamer.jobs.store import JobStore
from dreamer.jobs.worker import purge_expired, worker_process_main

log = logging.getLogger("dreamer.jobs")


class ExecutionEngine(Protocol):
    """What runs the jobs. Implementations: ``LocalProcessEngine`` (next: a Ray engine)."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def status(self) -> dict: ...


class LocalProcessEngine:
    """N worker processes on this host, each bound to one GPU (or the CPU), restarted if they die."""

    def __init__(self, config: StudioConfig, workers: int | None = None) -> None:
        self.config = config
        self.count = workers if workers is not None else config.worker_count()
        self._procs: list[mp.process.BaseProcess | None] = [None] * self.count
        self._ctx = mp.get_context("spawn")  # no forked CUDA or SQLite state
        self.restarts = 0

    def _spawn(self, index: int) -> None:
        gpu = index if self.config.device != "cpu" and self._has_cuda() else None
        proc = self._ctx.Process(
            target=worker_process_main,
            args=(self.config, gpu, os.getpid()),
            name=f"dreamer-worker-{index}",
            daemon=True,
        )
        proc.start()
        self._procs[index] = proc

    @staticmethod
    def _has_cuda() -> bool:
        try:
            import torch

            return torch.cuda.is_available()
        except Exception:  # noqa: BLE001
            return False

    def start(self) -> None:
        for i in range(self.count):
            self._spawn(i)

    def ensure_alive(self) -> None:
        """Restart dead workers (their job is re-queued by the supervisor's recovery)."""
        for i, proc in enumerate(self._procs):
            if proc is not None and not proc.is_alive():
                log.warning("worker %d exited with %s; restarting it", i, proc.exitcode)
                self.restarts += 1
                self._spawn(i)

    def stop(self, timeout: float = 10.0) -> None:
        for proc in self._procs:
            if proc is not None and proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            if proc is not None:
                proc.join(timeout)
                if proc.is_alive():
                    proc.kill()
                    proc.join(2)
        self._procs = [None] * self.count

    def status(self) -> dict:
        alive = sum(1 for p in self._procs if p is not None and p.is_alive())
        return {"engine": "local-processes", "workers": self.count, "alive": alive, "restarts": self.restarts}


class Supervisor(threading.Thread):
    """Every few seconds: re-queue or fail jobs whose worker died, restart workers, apply retention."""

    def __init__(
        self, store: JobStore, config: StudioConfig, engine: ExecutionEngine | None, every_s: float = 5.0
    ) -> None:
        super().__init__(daemon=True, name="dreamer-supervisor")
        self.store, self.config, self.engine, self.every_s = store, config, engine, every_s
        self.stopped = threading.Event()

    def tick(self) -> None:
        if isinstance(self.engine, LocalProcessEngine):
            self.engine.ensure_alive()
        for job in self.store.recover(self.config.stale_after_s, self.config.max_attempts):
            log.warning("job %s: %s", job.id, job.error or job.message)
        purge_expired(self.store, self.config)

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep supervising
                log.exception("supervisor tick failed")

    def stop(self) -> None:
        self.stopped.set()


def startup_recovery(store: JobStore, config: StudioConfig) -> list:
    """At server start: jobs left running by a dead process resume or fail (nothing runs forever).

    Only jobs whose worker is provably gone (same host, dead pid) or silent past the stale limit
    are touched, so remote workers sharing a PostgreSQL store keep theirs.
    """
    return store.recover(config.stale_after_s, config.max_attempts)
