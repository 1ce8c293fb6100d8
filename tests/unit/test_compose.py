"""The compose file as `docker-compose config` reads it: SPEC's services and commands, every
Runway service after `migrate`, and Flower refused without a password of the operator's own.

There is no Docker engine here: `docker-compose config` validates and resolves the file
without one. Debian's `docker-compose` (Compose v1) is installed when missing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.fixtures.processes import REPO
from tests.fixtures.tools import ensure_tool

COMPOSE_FILE = REPO / "docker-compose.yml"
RUNWAY_SERVICES = ("api", "worker", "beat", "flower")
# SPEC's command table, as each container runs it.
COMMANDS = {
    "migrate": ["runway", "migrate"],
    "api": ["uvicorn", "api.main:app"],
    "worker": ["celery", "-A", "app", "worker"],
    "beat": ["celery", "-A", "app", "beat"],
    "flower": ["celery", "-A", "app", "flower"],
}


@pytest.fixture(scope="module")
def docker_compose() -> str:
    """The `docker-compose` program (a failure, never a skip, when it cannot be had)."""
    return ensure_tool("docker-compose", "docker-compose")


def _config(docker_compose: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with only `env` from the caller (and no .env file)."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "COMPOSE_"))}
    return subprocess.run(
        [docker_compose, "--env-file", str(empty), "-f", str(COMPOSE_FILE), "config"],
        check=False,
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def services(docker_compose: str, tmp_path: Path) -> dict[str, Any]:
    result = _config(docker_compose, tmp_path, FLOWER_BASIC_AUTH="operator:not-a-default")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed["services"]


def test_the_services_and_commands_are_specs(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "redis", *COMMANDS}
    for name, command in COMMANDS.items():
        assert services[name]["command"][: len(command)] == command, name


def test_every_runway_service_waits_for_migrate(services: dict[str, Any]) -> None:
    for name in RUNWAY_SERVICES:
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }, name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_flower_takes_the_operators_password_and_is_published_on_loopback_only(
    services: dict[str, Any],
) -> None:
    flower = services["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "operator:not-a-default"
    assert flower["ports"] and all(_host_ip(port) == "127.0.0.1" for port in flower["ports"])


def _host_ip(port: str | dict[str, Any]) -> str:
    """Compose v1 prints "host_ip:published:target", v2 a mapping."""
    if isinstance(port, dict):
        return str(port.get("host_ip"))
    parts = port.split(":")
    return parts[0] if len(parts) == 3 else ""


def test_no_url_in_the_file_carries_a_password(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if "://" in str(value):
                assert urlsplit(str(value)).password is None, (name, key)


def test_no_default_password_anywhere() -> None:
    text = COMPOSE_FILE.read_text()
    assert "change-me" not in text
    assert "FLOWER_BASIC_AUTH:-" not in text and "FLOWER_BASIC_AUTH-" not in text


def test_compose_refuses_flower_without_basic_auth(docker_compose: str, tmp_path: Path) -> None:
    result = _config(docker_compose, tmp_path)
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stderr
    assert 'service "flower"' in result.stderr


def test_the_image_runs_from_a_directory_without_source() -> None:
    """The image installs the project as a package, and its working directory is not where the
    source was copied: nothing can come from a source tree by accident."""
    lines = [line.split() for line in (REPO / "Dockerfile").read_text().splitlines() if line]
    workdir = [parts[1] for parts in lines if parts[0] == "WORKDIR"][-1]
    copied = [parts[-1] for parts in lines if parts[0] == "COPY"]
    assert copied and not any(Path(target).is_relative_to(workdir) for target in copied)
    installs = [parts for parts in lines if "pip" in parts and "install" in parts]
    assert installs and not any("-e" in parts or "--editable" in parts for parts in installs)
