"""A worker: takes jobs from the store one at a time and runs the pipeline on them.

Each worker is one process bound to one device; the prior it loaded stays in memory for the next
job that names the same prior. Progress goes to the store (stage, %, ETA, latest preview) and
doubles as the cancel check and the heartbeat; a thread keeps the heartbeat going through long
steps. A job that was interrupted (its run folder already has ``run.json``) resumes from its
last checkpoint instead of starting over.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path

from dreamer.errors import DreamerError
from dreamer.jobs.config import StudioConfig
from dreamer.jobs.store import CANCELLED, FAILED, SUCCEEDED, Job, JobStore, worker_name

log = logging.getLogger("dreamer.jobs")

#: share of the whole run each stage takes (for one overall percentage), per geometry route;
#: both routes reach polish at the same 57 %, so the shared stages need no route
ROUTE_STAGE_WEIGHTS = (
    {"init": 0.02, "coarse": 0.45, "extract": 0.1, "polish": 0.23, "texture": 0.15, "export": 0.05},
    {"nerf": 0.3, "neus": 0.17, "dmtet": 0.1, "polish": 0.23, "texture": 0.15, "export": 0.05},
)
#: files a finished job offers for download, in this order
ARTIFACTS = ("model.glb", "model_obj.zip", "gaussians.ply", "preview.png", "run.json")
_OBJ_FILES = ("model.obj", "model.mtl", "model_albedo.png")
REPORT_EVERY_S = 0.5
HEARTBEAT_EVERY_S = 5.0


class JobCancelled(Exception):
    """Raised from the progress callback to stop a job its owner cancelled."""


#: runs the pipeline: (spec, run folder, progress callback, device, resume?) -> run folder.
#: The real one is ``run_pipeline``; tests swap in a fake at this boundary.
Executor = Callable[[dict, Path, Callable, "str | None", bool], Path]


def run_pipeline(spec: dict, out: Path, on_progress: Callable, device: str | None, resume: bool) -> Path:
    """The real executor: ``dreamer.stages.pipeline.generate`` or ``resume``."""
    from dreamer.stages.pipeline import GenerateRequest, generate
    from dreamer.stages.pipeline import resume as resume_run

    if resume:
        return resume_run(out, on_progress, device=device)
    request = GenerateRequest(
        prompt=spec["prompt"],
        out=out,
        preset=spec["preset"],
        negative=spec.get("negative"),
        prior=spec["prior"],
        seed=int(spec["seed"]),
        device=device,
        overrides=dict(spec.get("overrides") or {}),
    )
    return generate(request, on_progress)


class PriorCache:
    """Keeps the last loaded prior warm between jobs (one model per worker: memory is the limit).

    The pipeline loads priors through ``dreamer.priors.load.load_prior``; the cache wraps that
    function in this process only.
    """

    def __init__(self) -> None:
        self.key: tuple[str, str] | None = None
        self.prior = None
        self.loads = 0
        self._original = None

    def install(self) -> PriorCache:
        import dreamer.priors.load as loader

        if self._original is None:
            self._original = loader.load_prior

            def cached(spec, device):  # noqa: ANN001, ANN202 - same signature as load_prior
                key = (spec, str(device))
                if key != self.key:
                    self.prior, self.key = None, None  # free the old one before loading the next
                    self.prior = self._original(spec, device)
                    self.key = key
                    self.loads += 1
                return self.prior

            loader.load_prior = cached
        return self


def _progress_fraction(stage: str, step: int, total: int) -> float:
    weights = next((w for w in ROUTE_STAGE_WEIGHTS if stage in w), ROUTE_STAGE_WEIGHTS[0])
    done = 0.0
    for name, weight in weights.items():
        if name == stage:
            return done + weight * (min(step, total) / total if total > 0 else 0.0)
        done += weight
    return done


def _finish_artifacts(out: Path) -> list[str]:
    """Zip the OBJ set and list what a user may download."""
    if all((out / name).is_file() for name in _OBJ_FILES):
        tmp = out / "model_obj.zip.tmp"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in _OBJ_FILES:
                archive.write(out / name, name)
        tmp.replace(out / "model_obj.zip")
    return [name for name in ARTIFACTS if (out / name).is_file()]


class _Heartbeat(threading.Thread):
    """Beats for the job while a long step runs, and ends this process if its parent died."""

    def __init__(self, store: JobStore, job_id: str, worker: str, parent_pid: int | None) -> None:
        super().__init__(daemon=True, name="heartbeat")
        self.store, self.job_id, self.worker, self.parent_pid = store, job_id, worker, parent_pid
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(HEARTBEAT_EVERY_S):
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                os._exit(1)  # orphaned: the server that owns the job was killed; recovery re-queues it
            try:
                self.store.heartbeat(self.job_id, self.worker)
            except Exception:  # noqa: BLE001 - a missed beat is retried next time
                log.warning("heartbeat failed for %s", self.job_id, exc_info=True)


def run_job(
    store: JobStore,
    config: StudioConfig,
    job: Job,
    worker: str,
    execute: Executor = run_pipeline,
    parent_pid: int | None = None,
) -> str:
    """Run one claimed job to its end state; returns that state. Never raises for a job's own failure."""
    out = config.runs_dir / job.id
    resume = (out / "run.json").is_file()
    started = time.monotonic()
    last = {"t": 0.0, "stage": None}
    beat = _Heartbeat(store, job.id, worker, parent_pid)
    beat.start()

    def on_progress(event) -> None:  # noqa: ANN001 - a ProgressEvent
        now = time.monotonic()
        if event.stage == last["stage"] and now - last["t"] < REPORT_EVERY_S and event.preview is None:
            return
        last["t"], last["stage"] = now, event.stage
        fraction = _progress_fraction(event.stage, event.step, event.total)
        elapsed = now - started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.05 else event.eta_s
        preview = None
        if event.preview is not None:
            try:
                preview = str(Path(event.preview).resolve().relative_to(out.resolve()))
            except ValueError:
                preview = None
        text = event.message or f"{event.stage} {event.step}/{event.total}"
        if store.report(
            job.id,
            worker,
            stage=event.stage,
            progress=fraction,
            eta_s=eta,
            message=text[:500],
            preview=preview,
        ):
            raise JobCancelled()

    try:
        if store.report(
            job.id,
            worker,
            stage="init",
            progress=0.0,
            eta_s=None,
            preview=None,
            message="resuming from the last checkpoint" if resume else "starting",
        ):
            raise JobCancelled()
        execute(job.spec, out, on_progress, config.device, resume)
        artifacts = _finish_artifacts(out)
        store.finish(job.id, worker, SUCCEEDED, artifacts=artifacts, message="done")
        return SUCCEEDED
    except JobCancelled:
        store.finish(job.id, worker, CANCELLED, message="cancelled", artifacts=_finish_artifacts(out))
        return CANCELLED
    except DreamerError as err:
        store.finish(job.id, worker, FAILED, error=str(err).splitlines()[0] if str(err) else "failed")
        return FAILED
    except Exception as err:  # noqa: BLE001 - any bug ends this job, not the worker
        log.error("job %s failed:\n%s", job.id, traceback.format_exc())
        first = str(err).splitlines()[0][:300] if str(err) else ""
        store.finish(
            job.id, worker, FAILED, error=f"internal error: {type(err).__name__}: {first}".rstrip(": ")
        )
        return FAILED
    finally:
        beat.done.set()


def worker_loop(
    config: StudioConfig,
    stop: threading.Event,
    execute: Executor = run_pipeline,
    poll_s: float = 0.5,
    parent_pid: int | None = None,
    max_jobs: int | None = None,
) -> int:
    """Take and run jobs until ``stop`` is set; returns how many jobs it ran."""
    store = JobStore(config.resolved_db_url())
    name = (
        f"{worker_name()}:{threading.get_ident() % 100000}" if execute is not run_pipeline else worker_name()
    )
    if execute is run_pipeline:
        PriorCache().install()
    ran = 0
    try:
        while not stop.is_set() and (max_jobs is None or ran < max_jobs):
            if parent_pid is not None and os.getppid() != parent_pid:
                break
            job = store.claim_next(name)
            if job is None:
                stop.wait(poll_s)
                continue
            log.info("worker %s runs job %s (attempt %d)", name, job.id, job.attempts)
            run_job(store, config, job, name, execute, parent_pid)
            ran += 1
    finally:
        store.close()
    return ran


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so no orphan keeps a job's run folder locked."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_process_main(config: StudioConfig, gpu: int | None, parent_pid: int | None) -> None:
    """Entry point of a worker process started by the engine (one per GPU)."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    os.environ.setdefault("TQDM_DISABLE", "1")
    if parent_pid is not None:
        _die_with_parent()
        if os.getppid() != parent_pid:
            return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker_loop(config, stop, parent_pid=parent_pid)


def purge_expired(store: JobStore, config: StudioConfig) -> int:
    """Delete the outputs of finished jobs older than the retention period; the records stay."""
    if config.retention_days <= 0:
        return 0
    removed = 0
    runs = config.runs_dir.resolve()
    for job in store.expired(config.retention_days * 86400):
        folder = (runs / job.id).resolve()
        if folder.parent == runs and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
        store.mark_purged(job.id)
        removed += 1
    return removed
