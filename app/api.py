"""The HTTP API (FastAPI): submit, status, list, cancel, download, with real status codes.

400 bad input (with the reason), 401 not logged in, 404 no such job *for you* (other users' jobs
are indistinguishable from missing ones), 409 wrong state, 422 schema violations, 429 your queue
limit, 503 the whole queue is full. Handlers only touch the database (quick) and files; model
work happens in worker processes, so the event loop never blocks on a job.
"""

from __future__ import annotations

import base64
import hmac
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from dreamer.errors import DreamerError
from dreamer.jobs.service import JobService, NotFound, check_user
from dreamer.jobs.spec import JobRequest
from dreamer.jobs.store import STATES, Job, NotFinished, QueueFull, UserLimit
from dreamer.jobs.worker import ARTIFACTS

API_PREFIX = "/api/v1"
JOB_ID = Path(..., min_length=1, max_length=64, pattern=r"^[0-9a-f]{1,64}$", description="a job id")

_MEDIA = {
    "model.glb": "model/gltf-binary",
    "model_obj.zip": "application/zip",
    "gaussians.ply": "application/octet-stream",
    "preview.png": "image/png",
    "run.json": "application/json",
}


class Unauthorized(Exception):
    pass


class JobOut(BaseModel):
    """A job as its owner sees it."""

    id: str
    owner: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    position: int | None
    stage: str | None
    progress: float
    eta_s: float | None
    message: str | None
    error: str | None
    prompt: str
    negative: str | None
    preset: str | None
    seed: int | None
    prior: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    cancel_requested: bool
    purged: bool
    preview_url: str | None
    files: dict[str, str]


class JobList(BaseModel):
    jobs: list[JobOut]
    counts: dict[str, int]


class Preset(BaseModel):
    name: str
    description: str
    time: str
    memory: str


class Health(BaseModel):
    status: str
    jobs: dict[str, int]
    engine: dict


class Problem(BaseModel):
    detail: str


def job_out(job: Job) -> JobOut:
    base = f"{API_PREFIX}/jobs/{job.id}"
    return JobOut(
        id=job.id,
        owner=job.owner,
        state=job.state,
        position=job.position,
        stage=job.stage,
        progress=round(job.progress, 4),
        eta_s=round(job.eta_s, 1) if job.eta_s is not None else None,
        message=job.message,
        error=job.error,
        prompt=job.spec.get("prompt", ""),
        negative=job.spec.get("negative"),
        preset=job.spec.get("preset"),
        seed=job.spec.get("seed"),
        prior=job.spec.get("prior"),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        purged=job.purged,
        preview_url=f"{base}/preview" if (job.preview or "preview.png" in job.artifacts) else None,
        files={name: f"{base}/files/{name}" for name in job.artifacts},
    )


def user_from_request(request: Request, service: JobService) -> str:
    """Who is asking: a bearer token, HTTP basic, or (no auth configured) the X-Dreamer-User header."""
    config = service.config
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if config.tokens and scheme.lower() == "bearer":
        for token, user in config.tokens.items():
            if hmac.compare_digest(value.encode(), token.encode()):
                return user
        raise Unauthorized("this token is not valid")
    if config.passwords and scheme.lower() == "basic":
        try:
            name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise Unauthorized("malformed basic credentials") from None
        expected = config.passwords.get(name)
        if expected is not None and hmac.compare_digest(password.encode(), expected.encode()):
            return name
        raise Unauthorized("wrong user name or password")
    if config.auth_enabled:
        raise Unauthorized("log in: send Authorization: Bearer TOKEN or HTTP basic credentials")
    return check_user(request.headers.get("x-dreamer-user") or "anonymous")


def add_error_handlers(app: FastAPI) -> None:
    """Each failure kind gets its own status code and a one-line message."""

    def problem(code: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=code, headers=headers)

    app.add_exception_handler(DreamerError, lambda r, e: problem(400, str(e)))
    app.add_exception_handler(NotFound, lambda r, e: problem(404, str(e)))
    app.add_exception_handler(NotFinished, lambda r, e: problem(409, str(e)))
    app.add_exception_handler(UserLimit, lambda r, e: problem(429, str(e)))
    app.add_exception_handler(QueueFull, lambda r, e: problem(503, str(e), {"Retry-After": "30"}))
    app.add_exception_handler(
        Unauthorized,
        lambda r, e: problem(401, str(e), {"WWW-Authenticate": 'Basic realm="dreamer", charset="UTF-8"'}),
    )

    def invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        parts = []
        for item in err.errors()[:5]:
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "request"
            parts.append(f"{where}: {item.get('msg', 'invalid')}")
        return JSONResponse(
            {
                "detail": "; ".join(parts) or "invalid request",
                "errors": [
                    {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
                    for e in err.errors()[:20]
                ],
            },
            status_code=422,
        )

    app.add_exception_handler(RequestValidationError, invalid)


def build_router(service: JobService, engine_status=lambda: {}) -> APIRouter:  # noqa: ANN001
    """All API routes, bound to one service."""
    router = APIRouter(
        prefix=API_PREFIX,
        responses={
            400: {"model": Problem},
            401: {"model": Problem},
            404: {"model": Problem},
            422: {"model": Problem},
        },
    )

    def current_user(request: Request) -> str:
        return user_from_request(request, service)

    @router.post(
        "/jobs",
        status_code=201,
        response_model=JobOut,
        summary="submit a job",
        responses={429: {"model": Problem}, 503: {"model": Problem}},
    )
    def submit(body: JobRequest, user: str = Depends(current_user)) -> JobOut:
        return job_out(service.submit(user, body))

    @router.get("/jobs", response_model=JobList, summary="your jobs, newest first")
    def list_jobs(
        user: str = Depends(current_user),
        state: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = Query(None),
        limit: int = Query(100, ge=1, le=500),
        offset: int = Query(0, ge=0, le=1_000_000),
    ) -> JobList:
        jobs = service.list(user, (state,) if state else None, limit, offset)
        mine = service.list(user, None, 10_000)
        counts = {s: sum(1 for j in mine if j.state == s) for s in STATES}
        return JobList(jobs=[job_out(j) for j in jobs], counts=counts)

    @router.get("/jobs/{job_id}", response_model=JobOut, summary="one job's status and progress")
    def status(job_id: str = JOB_ID, user: str = Depends(current_user)) -> JobOut:
        return job_out(service.get(user, job_id))

    @router.post(
        "/jobs/{job_id}/cancel",
        response_model=JobOut,
        summary="cancel a queued or running job",
        responses={409: {"model": Problem}},
    )
    def cancel(job_id: str = JOB_ID, user: str = Depends(current_user)) -> JobOut:
        return job_out(service.cancel(user, job_id))

    @router.get(
        "/jobs/{job_id}/files/{name}",
        summary="download an output",
        response_class=FileResponse,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def download(
        name: str = Path(..., max_length=64), job_id: str = JOB_ID, user: str = Depends(current_user)
    ) -> FileResponse:
        path = service.artifact(user, job_id, name)
        return FileResponse(
            path, media_type=_MEDIA.get(name, "application/octet-stream"), filename=f"{job_id[:8]}-{name}"
        )

    @router.get(
        "/jobs/{job_id}/preview",
        summary="the latest preview image",
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}}},
    )
    def preview(job_id: str = JOB_ID, user: str = Depends(current_user)) -> FileResponse:
        return FileResponse(
            service.preview(user, job_id), media_type="image/png", headers={"Cache-Control": "no-store"}
        )

    @router.get("/presets", response_model=list[Preset], summary="the presets users may pick")
    def presets() -> list[Preset]:
        return [Preset(**p) for p in service.presets()]

    @router.get("/health", response_model=Health, summary="liveness: database reachable, workers up")
    def health() -> JSONResponse:
        engine = engine_status()
        counts = service.store.counts()
        ok = engine.get("alive", 1) > 0 if engine else True
        body = {"status": "ok" if ok else "degraded", "jobs": counts, "engine": engine}
        return JSONResponse(body, status_code=200 if ok else 503)

    return router


__all__ = ["ARTIFACTS", "build_router", "add_error_handlers", "job_out", "user_from_request", "API_PREFIX"]
