"""The web UI (Gradio 6): prompt in, live progress, a 3D viewer and downloads out.

The page never runs a job itself: it submits to the job store and polls it once a second, so
closing the tab loses nothing. Who you are comes from the login (when the operator set one up)
or from an id kept in the browser's local storage; either way you see only your own jobs.
"""

from __future__ import annotations

import secrets
from typing import Any

import gradio as gr
from pydantic import ValidationError

from dreamer.errors import DreamerError
from dreamer.jobs.service import JobService, NotFound
from dreamer.jobs.spec import MAX_PROMPT_CHARS, MAX_SEED, JobRequest
from dreamer.jobs.store import FINISHED, QueueFull, UserLimit

_HISTORY_COLUMNS = ["job", "state", "progress", "prompt", "created"]


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return (
        f", about {seconds // 60} min {seconds % 60} s left" if seconds >= 60 else f", about {seconds} s left"
    )


def describe(job: Any) -> str:
    """One status line: queue position, or stage + percent + ETA, or the outcome."""
    if job is None:
        return "Nothing submitted yet."
    head = f"**Job `{job.id[:8]}`** — "
    if job.state == "queued":
        return head + f"queued, position **{job.position}** in line. {job.message or ''}"
    if job.state == "running":
        percent = round(job.progress * 100)
        return head + f"running: **{job.stage or 'starting'}** — **{percent}%**{_fmt_eta(job.eta_s)}"
    if job.state == "succeeded":
        return head + "**done**. Rotate the model below; downloads underneath."
    if job.state == "failed":
        return head + f"**failed**: {job.error}"
    return head + "**cancelled**."


def _error_text(err: Exception) -> str:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}"
    return str(err)


def _preset_override(label: str, minimum: int, maximum: int) -> gr.Number:
    """An optional whole number that replaces a preset setting; empty keeps the preset's."""
    return gr.Number(
        value=None, precision=0, minimum=minimum, maximum=maximum, label=f"{label} (empty: the preset's)"
    )


def build_ui(service: JobService) -> gr.Blocks:
    """The Blocks app, bound to one job service."""
    from dreamer.preset_files import preset_names

    presets = preset_names()
    default_preset = (
        "fast"
        if service.config.device == "cuda" and "fast" in presets
        else ("cpu" if "cpu" in presets else presets[0])
    )

    def who(identity: dict | None, request: gr.Request | None) -> str:
        if request is not None and getattr(request, "username", None):
            return request.username
        if identity and identity.get("user"):
            return identity["user"]
        return "anonymous"

    def on_load(identity: dict | None, request: gr.Request):
        identity = dict(identity or {})
        if not identity.get("user"):
            identity["user"] = "web-" + secrets.token_hex(8)
        user = who(identity, request)
        job_id = identity.get("job")
        if job_id and service.store.get(job_id, owner=user) is None:
            job_id = None
        if not job_id:  # the tab closed before it saved the id: show the newest job instead
            newest = service.list(user, limit=1)
            job_id = newest[0].id if newest else None
        return identity, job_id, f"Signed in as `{user}`"

    def submit(
        prompt, negative, preset, seed, randomise, steps, faces, texture, identity, request: gr.Request
    ):
        user = who(identity, request)
        try:
            req = JobRequest(
                prompt=prompt or "",
                negative=negative or None,
                preset=preset,
                seed=None if randomise or seed is None else int(seed),
                steps=int(steps) if steps else None,
                faces=int(faces) if faces else None,
                texture_size=int(texture) if texture else None,
            )
            job = service.submit(user, req)
        except (DreamerError, ValidationError, QueueFull, UserLimit, ValueError) as err:
            gr.Warning(_error_text(err))
            return gr.skip(), gr.skip(), f"Not submitted: {_error_text(err)}", gr.skip()
        identity = dict(identity or {}, job=job.id)
        return job.id, identity, describe(job), job.spec["seed"]

    def refresh(job_id, shown, preview_key, history_key, identity, request: gr.Request):
        user = who(identity, request)
        job = service.store.get(job_id, owner=user) if job_id else None
        status = describe(job)
        model = files = gr.skip()
        preview = gr.skip()
        if job is not None:
            try:
                path = service.preview(user, job.id)
                key = f"{path}:{path.stat().st_mtime_ns}"
                if key != preview_key:
                    preview, preview_key = str(path), key
            except (NotFound, OSError):
                pass
            if job.state in FINISHED and shown != job.id:
                shown = job.id
                folder = service.run_folder(job)
                model = str(folder / "model.glb") if "model.glb" in job.artifacts else None
                files = [
                    str(folder / n)
                    for n in ("model.glb", "model_obj.zip", "gaussians.ply")
                    if n in job.artifacts
                ] or None
        elif shown is not None:
            shown, model, files = None, None, None
        jobs = service.list(user, limit=50)
        rows = [
            [
                j.id,
                j.state,
                f"{round(j.progress * 100)}%",
                j.spec.get("prompt", "")[:60],
                j.created_at.strftime("%Y-%m-%d %H:%M"),
            ]
            for j in jobs
        ]
        key = repr(rows)
        history = gr.skip()
        if key != history_key:
            history, history_key = rows, key
        return status, preview, model, files, history, shown, preview_key, history_key

    def cancel(job_id, identity, request: gr.Request):
        user = who(identity, request)
        if not job_id:
            return "Nothing to cancel."
        try:
            return describe(service.cancel(user, job_id))
        except (NotFound, Exception) as err:  # noqa: BLE001 - NotFinished and friends: say why
            return f"Cannot cancel: {err}"

    def pick(evt: gr.SelectData, identity):
        row = evt.row_value if evt is not None else None
        if not row:
            return gr.skip(), gr.skip()
        return row[0], dict(identity or {}, job=row[0])

    with gr.Blocks(title="Dreamer studio") as demo:
        identity = gr.BrowserState({}, storage_key="dreamer-studio")
        job_id = gr.State(None)
        shown = gr.State(None)
        preview_key = gr.State(None)
        history_key = gr.State(None)
        gr.Markdown(
            "# Dreamer studio\nDescribe an object; get a textured 3D model. Jobs keep running when "
            "you close this tab."
        )
        who_md = gr.Markdown(elem_id="who")
        with gr.Row():
            with gr.Column(scale=1):
                prompt = gr.Textbox(
                    label="Prompt",
                    placeholder="a wooden chair",
                    max_length=MAX_PROMPT_CHARS,
                    elem_id="prompt",
                )
                negative = gr.Textbox(
                    label="Negative prompt", max_length=MAX_PROMPT_CHARS, elem_id="negative"
                )
                preset = gr.Dropdown(presets, value=default_preset, label="Preset", elem_id="preset")
                with gr.Row():
                    seed = gr.Number(
                        value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="seed"
                    )
                    randomise = gr.Checkbox(value=True, label="Random seed", elem_id="randomise")
                with gr.Accordion("Advanced settings", open=False):
                    steps = _preset_override("Coarse steps", 1, 20000)
                    faces = _preset_override("Target faces", 100, 500_000)
                    texture = _preset_override("Texture size", 64, 4096)
                with gr.Row():
                    go = gr.Button("Generate", variant="primary", elem_id="submit")
                    stop = gr.Button("Cancel", elem_id="cancel")
            with gr.Column(scale=2):
                status = gr.Markdown("Nothing submitted yet.", elem_id="status")
                with gr.Row():
                    preview = gr.Image(
                        label="Latest preview",
                        type="filepath",
                        interactive=False,
                        elem_id="preview",
                        height=256,
                    )
                    viewer = gr.Model3D(label="Result", elem_id="viewer", height=360)
                files = gr.File(
                    label="Downloads (GLB, OBJ zip, PLY)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )
        gr.Markdown("### Your jobs (click one to show it)")
        history = gr.Dataframe(headers=_HISTORY_COLUMNS, interactive=False, elem_id="history", wrap=True)
        timer = gr.Timer(1.0)

        demo.load(on_load, [identity], [identity, job_id, who_md], api_visibility="private")
        go.click(
            submit,
            [prompt, negative, preset, seed, randomise, steps, faces, texture, identity],
            [job_id, identity, status, seed],
            api_visibility="private",
            api_name="ui_submit",  # not "submit": that name belongs to the gradio_client endpoint
        )
        stop.click(cancel, [job_id, identity], [status], api_visibility="private", api_name="ui_cancel")
        history.select(pick, [identity], [job_id, identity], api_visibility="private")
        timer.tick(
            refresh,
            [job_id, shown, preview_key, history_key, identity],
            [status, preview, viewer, files, history, shown, preview_key, history_key],
            show_progress="hidden",
            api_visibility="private",
            concurrency_limit=None,
        )
        _add_client_api(service)
    return demo


def _add_client_api(service: JobService) -> None:
    """Named endpoints for ``gradio_client`` (the user is the login, or the anonymous user)."""

    def user_of(request: gr.Request) -> str:
        name = getattr(request, "username", None)
        if name:
            return name
        if service.config.auth_enabled:
            raise gr.Error("log in first")
        header = request.headers.get("x-dreamer-user") if request is not None else None
        from dreamer.jobs.service import check_user

        try:
            return check_user(header or "anonymous")
        except DreamerError as err:
            raise gr.Error(str(err)) from None

    def as_dict(job) -> dict:
        from app.api import job_out

        return job_out(job).model_dump(mode="json")

    def api_submit(
        prompt: str, negative: str = "", preset: str = "", seed: int = -1, request: gr.Request = None
    ) -> dict:
        """Queue a job; returns it (with its queue position)."""
        try:
            req = JobRequest(
                prompt=prompt,
                negative=negative or None,
                preset=preset or None,
                seed=None if seed is None or seed < 0 else int(seed),
            )
            return as_dict(service.submit(user_of(request), req))
        except (DreamerError, ValidationError, QueueFull, UserLimit) as err:
            raise gr.Error(_error_text(err)) from None

    def api_status(job_id: str, request: gr.Request = None) -> dict:
        """A job's state, stage, progress, ETA and file URLs."""
        try:
            return as_dict(service.get(user_of(request), job_id))
        except NotFound as err:
            raise gr.Error(str(err)) from None

    def api_cancel(job_id: str, request: gr.Request = None) -> dict:
        """Cancel a queued or running job."""
        try:
            return as_dict(service.cancel(user_of(request), job_id))
        except Exception as err:  # noqa: BLE001 - NotFound / NotFinished: say why
            raise gr.Error(str(err)) from None

    def api_list(request: gr.Request = None) -> list:
        """Your jobs, newest first."""
        return [as_dict(j) for j in service.list(user_of(request), limit=100)]

    gr.api(api_submit, api_name="submit")
    gr.api(api_status, api_name="status")
    gr.api(api_cancel, api_name="cancel")
    gr.api(api_list, api_name="list")
