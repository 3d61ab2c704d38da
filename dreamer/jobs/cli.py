"""CLI commands for the studio: ``dreamer serve``, ``dreamer worker`` and ``dreamer jobs list|show|cancel``.

``dreamer/cli.py`` calls ``add_commands(subparsers)`` and hands the parsed arguments of these
commands to ``dispatch(args)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dreamer.jobs.config import StudioConfig

COMMANDS = ("serve", "worker", "jobs")


def _store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, help="output store (default $DREAMER_STUDIO_ROOT or ./studio)")
    parser.add_argument("--db", help="SQLAlchemy URL of the job database (default SQLite in the store)")


def _serve_args(parser: argparse.ArgumentParser) -> None:
    _store_args(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in Docker)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--workers", type=int, help="worker processes (default: one per GPU, one on a CPU)")
    parser.add_argument(
        "--no-workers", action="store_true", help="serve only; run `dreamer worker` elsewhere"
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], help="device for every job (default: the preset's)"
    )
    parser.add_argument(
        "--prior", help="default prior for jobs that name none, e.g. reference:assets/demo/duck.glb"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="setting applied to every job (before the user's own)",
    )
    parser.add_argument(
        "--reference-dir",
        action="append",
        default=[],
        type=Path,
        help="folder that reference: meshes may come from (repeatable)",
    )
    parser.add_argument(
        "--model-dir",
        action="append",
        default=[],
        type=Path,
        help="folder that local model folders may come from (repeatable)",
    )
    parser.add_argument("--max-queued", type=int, help="bound on the whole queue")
    parser.add_argument("--max-queued-per-user", type=int, help="queued jobs one user may have")
    parser.add_argument("--retention-days", type=float, help="delete finished outputs after this (0: keep)")


def build_serve_parser() -> argparse.ArgumentParser:
    """The ``serve`` options as a stand-alone parser (``python -m app.server``)."""
    parser = argparse.ArgumentParser(
        prog="dreamer serve", description="the studio: web UI, HTTP API, workers"
    )
    _serve_args(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> StudioConfig:
    """Flags over ``DREAMER_*`` variables over defaults."""
    from dreamer.preset_files import parse_override

    config = StudioConfig()
    if getattr(args, "root", None):
        config.root = args.root
    if getattr(args, "db", None):
        config.db_url = args.db
    for name in ("workers", "device", "max_queued", "max_queued_per_user", "retention_days"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(config, name, value)
    if getattr(args, "prior", None):
        config.default_prior = args.prior
        if args.prior.startswith("reference:"):  # the operator's own reference mesh is allowed
            config.reference_dirs.append(Path(args.prior[len("reference:") :]).expanduser().resolve().parent)
    config.default_overrides.update(dict(parse_override(s) for s in getattr(args, "set", []) or []))
    config.reference_dirs += list(getattr(args, "reference_dir", []) or [])
    config.model_dirs += list(getattr(args, "model_dir", []) or [])
    return config.prepare()


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add serve, worker and jobs to dreamer's sub-commands."""
    serve = sub.add_parser("serve", help="run the studio: web UI at /ui, HTTP API at /api/v1, workers")
    _serve_args(serve)

    worker = sub.add_parser("worker", help="run one worker in the foreground (one per GPU)")
    _store_args(worker)
    worker.add_argument("--device", choices=["cpu", "cuda"])
    worker.add_argument("--gpu", type=int, help="bind to this GPU index")

    jobs = sub.add_parser("jobs", help="list, show or cancel jobs in the store")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    listing = jobs_sub.add_parser("list", help="jobs, newest first")
    _store_args(listing)
    listing.add_argument("--user", help="only this user's jobs")
    listing.add_argument("--state", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    listing.add_argument("--limit", type=int, default=50)
    show = jobs_sub.add_parser("show", help="one job as JSON")
    _store_args(show)
    show.add_argument("job_id")
    cancel = jobs_sub.add_parser("cancel", help="cancel a queued or running job")
    _store_args(cancel)
    cancel.add_argument("job_id")


def dispatch(args: argparse.Namespace) -> int:
    """Run a studio command; raises DreamerError for user mistakes like the rest of the CLI."""
    from dreamer.errors import DreamerError

    if args.command == "serve":
        from app.server import serve

        serve(config_from_args(args), args.host, args.port, not args.no_workers)
        return 0
    if args.command == "worker":
        import os

        from dreamer.jobs.worker import worker_process_main

        config = config_from_args(args)
        if args.gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
        worker_process_main(config, None, None)
        return 0

    from dreamer.jobs.store import JobStore, NotFinished

    config = config_from_args(args)
    store = JobStore(config.resolved_db_url())
    if args.jobs_command == "list":
        for job in store.list(
            owner=args.user, states=(args.state,) if args.state else None, limit=args.limit
        ):
            where = f"#{job.position}" if job.position else f"{round(job.progress * 100)}%"
            print(f"{job.id}  {job.state:<9} {where:>5}  {job.owner:<16} {job.spec.get('prompt', '')[:50]}")
        return 0
    job = store.get(args.job_id)
    if job is None:
        raise DreamerError(f"no job {args.job_id} in {config.resolved_db_url()}")
    if args.jobs_command == "cancel":
        try:
            job = store.cancel(args.job_id)
        except NotFinished as err:
            raise DreamerError(str(err)) from None
    json.dump(job.to_dict(), sys.stdout, indent=2)
    print()
    return 0
