"""Docker cannot build here: check the files say what operators rely on."""

from __future__ import annotations

import re

import yaml

from tests.studio_fixtures import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_essentials():
    steps = _instructions(DOCKERFILE)
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms[0].startswith("nvidia/cuda:") and "devel" in froms[0]
    assert froms[-1].startswith("nvidia/cuda:") and "runtime" in froms[-1]
    assert any("git clone" in rest and "nvdiffrast" in rest for word, rest in steps if word == "RUN")
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(word == "HEALTHCHECK" and "/api/v1/health" in rest for word, rest in steps)
    assert any(word == "VOLUME" and "/models" in rest for word, rest in steps)
    env = " ".join(rest for word, rest in steps if word == "ENV")
    assert "HF_HOME=/models" in env and "GRADIO_ANALYTICS_ENABLED=False" in env
    assert any(word == "ENTRYPOINT" and "app.server" in rest for word, rest in steps)
    # every COPY source exists in the repository
    for word, rest in steps:
        if word == "COPY" and "--from" not in rest:
            sources = [p for p in rest.split()[:-1] if not p.startswith("--")]
            for src in sources:
                assert (REPO / src.rstrip("/")).exists(), src


def test_compose_for_one_gpu_host():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    studio = compose["services"]["studio"]
    devices = studio["deploy"]["resources"]["reservations"]["devices"]
    assert (
        devices[0]["driver"] == "nvidia" and devices[0]["count"] == 1 and "gpu" in devices[0]["capabilities"]
    )
    assert any(v.endswith(":/models") for v in studio["volumes"])
    assert any(v.endswith(":/data") for v in studio["volumes"])
    assert "/api/v1/health" in " ".join(studio["healthcheck"]["test"])
    assert studio["ports"][0].startswith("127.0.0.1:")  # not open to the world by default
    assert set(compose["volumes"]) >= {"models", "studio-data"}


def test_dockerignore_keeps_the_context_small():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored
