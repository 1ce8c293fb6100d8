"""The project as a user installs it: `pip install .` (not editable) into a fresh virtual
environment, then run from another directory, with no source tree in sight."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from app import schema
from tests.fixtures.processes import REPO

pytestmark = pytest.mark.slow
INSTALL_TIMEOUT_SECONDS = 600
NOT_SOURCE = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "tests", "bench")


def _env(**extra: str) -> dict[str, str]:
    """The test's environment without anything that would put the checkout on the path."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the checkout installed into it as a wheel; its bin directory."""
    root = tmp_path_factory.mktemp("install")
    # A clean copy, as the image gets: setuptools builds in the source tree, and a stale
    # build/ there could hide a file the package no longer ships.
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    result = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(source)],
        check=False,
        cwd=root,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return bin_dir


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty working directory, far from the checkout."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


@pytest.fixture
def throwaway_url() -> Iterator[str]:
    """A database name nobody has created yet (`runway migrate` creates it); dropped after."""
    base = make_url(os.environ["DATABASE_URL"])
    name = f"{base.database}_{os.getpid()}_install"
    admin = base.set(drivername="postgresql", database="postgres")

    def drop() -> None:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    drop()
    yield base.set(database=name).render_as_string(hide_password=False)
    drop()


def _head() -> str:
    script = ScriptDirectory.from_config(schema.alembic_config("postgresql://unused"))
    head = script.get_current_head()
    assert head is not None
    return head


def test_runway_migrate_from_any_directory(
    installed: Path, elsewhere: Path, throwaway_url: str
) -> None:
    result = subprocess.run(
        [str(installed / "runway"), "migrate"],
        check=False,
        cwd=elsewhere,
        env=_env(DATABASE_URL=throwaway_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    plain = make_url(throwaway_url).set(drivername="postgresql")
    with psycopg.connect(plain.render_as_string(hide_password=False)) as conn:
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == (_head(),)


PROBE = """
import json, pathlib
import api.main, api.console.render, app, migrations
from app.pipelines import builtin
pipelines = pathlib.Path(builtin.__file__).parent
mounted = [getattr(route, "app", None) for route in api.main.app.routes]
static = [d for d in (getattr(m, "directory", None) for m in mounted) if d]
print(json.dumps({
    "app": app.__file__,
    "migrations": [str(p) for p in migrations.__path__],
    "articles": (pipelines / "data" / "articles.json").is_file(),
    "assets": sorted(p.name for d in static for p in pathlib.Path(d).iterdir()),
    "templates": sorted(p.name for p in (api.console.render.HERE / "templates").iterdir()),
}))
"""


def test_the_installed_package_is_whole_and_used(installed: Path, elsewhere: Path) -> None:
    result = subprocess.run(
        [str(installed / "python"), "-c", PROBE],
        check=False,
        cwd=elsewhere,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout)
    venv_root = installed.parent.resolve()
    assert Path(found["app"]).resolve().is_relative_to(venv_root), found["app"]
    assert not Path(found["app"]).resolve().is_relative_to(REPO)
    assert all(Path(p).resolve().is_relative_to(venv_root) for p in found["migrations"])
    assert found["articles"] is True
    # what /docs and /redoc serve, from the installed package, with no CDN
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"} <= set(found["assets"])
    # and what the console serves
    assert {"console.css", "console.js"} <= set(found["assets"])
    assert {"base.html", "stream.html", "run.html"} <= set(found["templates"])
