"""Start the studio server as a real process (as operators do), for crash and browser tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.studio_fixtures import DUCK, REPO, TINY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m app.server`` on a free port with the demo duck as the default prior."""

    def __init__(self, root: Path, log: Path, extra: list[str] | None = None) -> None:
        self.root, self.log_path, self.extra = root, log, extra or []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> Server:
        args = [
            sys.executable,
            "-m",
            "app.server",
            "--root",
            str(self.root),
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--device",
            "cpu",
            "--prior",
            f"reference:{DUCK}",
        ]
        for key, value in TINY.items():
            args += ["--set", f"{key}={value}"]
        env = dict(
            os.environ,
            HF_HUB_OFFLINE="1",
            GRADIO_ANALYTICS_ENABLED="False",
            TQDM_DISABLE="1",
            PYTHONUNBUFFERED="1",
        )
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            args + self.extra, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, like a power cut or the OOM killer."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()
