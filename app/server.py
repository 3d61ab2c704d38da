"""``dreamer serve``: one FastAPI app with the HTTP API at /api/v1 and the Gradio UI at /ui.

Starting it recovers jobs a previous server left running (they resume from their checkpoint or
end failed with the reason), starts the worker processes and a supervisor thread; stopping it
hands running jobs back to the queue by terminating the workers (the next start resumes them).
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from fastapi import FastAPI  # noqa: E402 - the variable above must be set before gradio loads
from fastapi.responses import RedirectResponse  # noqa: E402

from dreamer.jobs.config import StudioConfig  # noqa: E402
from dreamer.jobs.engine import LocalProcessEngine, Supervisor, startup_recovery  # noqa: E402
from dreamer.jobs.service import JobService  # noqa: E402

log = logging.getLogger("dreamer.serve")


def create_app(config: StudioConfig, start_workers: bool = True, with_ui: bool = True) -> FastAPI:
    """The whole studio app; ``start_workers=False`` serves the API/UI only (workers run elsewhere)."""
    from app.api import add_error_handlers, build_router

    service = JobService(config)
    service.warm_up()
    engine = LocalProcessEngine(service.config) if start_workers else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        supervisor = Supervisor(service.store, service.config, engine)
        for job in startup_recovery(service.store, service.config):
            log.warning("recovered job %s -> %s: %s", job.id, job.state, job.error or job.message)
        if engine is not None:
            engine.start()
        supervisor.start()
        try:
            yield
        finally:
            supervisor.stop()
            if engine is not None:
                engine.stop()
            service.store.engine.dispose()

    app = FastAPI(
        title="Dreamer studio API",
        version="1",
        lifespan=lifespan,
        description="Text-to-3D jobs: submit, follow, cancel and download. Errors carry a one-line `detail`.",
    )
    add_error_handlers(app)
    app.include_router(build_router(service, engine.status if engine is not None else lambda: {}))
    app.state.service = service
    app.state.engine = engine

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/" if with_ui else "/docs")

    if with_ui:
        import gradio as gr

        from app.ui import build_ui

        auth = None
        if config.auth_enabled:

            def auth(user: str, password: str) -> bool:
                import hmac

                expected = config.passwords.get(user)
                if expected is not None and hmac.compare_digest(password.encode(), expected.encode()):
                    return True
                return config.tokens.get(password) == user

        app = gr.mount_gradio_app(
            app,
            build_ui(service),
            path="/ui",
            auth=auth,
            allowed_paths=[str(service.config.runs_dir)],
            footer_links=["api"],
            ssr_mode=False,
            mcp_server=False,
        )
    return app


def serve(
    config: StudioConfig, host: str = "127.0.0.1", port: int = 7860, start_workers: bool = True
) -> None:
    """Run the studio until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(config, start_workers=start_workers)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)


def main() -> None:
    """``python -m app.server`` (tests and the Docker image use it too)."""
    from dreamer.jobs.cli import build_serve_parser, config_from_args

    args = build_serve_parser().parse_args()
    serve(config_from_args(args), args.host, args.port, not args.no_workers)


if __name__ == "__main__":
    main()
