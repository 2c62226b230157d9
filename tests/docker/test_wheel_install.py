"""A regular install (a wheel in a fresh venv) builds the sandbox image from its own installed files, never an index.

The name ``coderunner`` on PyPI is another project: an image build that fetched "its own" distribution from an
index put that project in the image (or failed). Here the fetch would fail for certain: pip is pointed at a
find-links folder holding broken wheels under our distribution's name (and the old name) and version.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import coderunner
from coderunner.backends.docker import IMAGE_REPO, OFFLINE_BASE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

# What the image and the venv report about the coderunner they import: version, distribution, a digest of the
# package's files (the image must hold exactly the installed files) and the generator of the wheel it came from.
PROBE = """
import hashlib, importlib.metadata as m, json, pathlib, sys
import coderunner
pkg = pathlib.Path(coderunner.__file__).parent
digest = hashlib.sha256()
for p in sorted(pkg.rglob('*')):
    if p.is_file() and '__pycache__' not in p.parts:
        digest.update(p.relative_to(pkg).as_posix().encode() + b'\\0' + p.read_bytes())
wheel = m.distribution(sys.argv[1]).read_text('WHEEL')
print(json.dumps({'version': coderunner.__version__, 'dist': m.version(sys.argv[1]), 'digest': digest.hexdigest(),
                  'generator': [line for line in wheel.splitlines() if line.startswith('Generator:')]}))
"""


def _distribution_name() -> str:
    match = re.search(r'(?m)^name\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert match, "pyproject.toml has no [project] name"
    return match.group(1)


def _wheel_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1200, **kwargs)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the source tree with this checkout installed from its wheel, extras docker and server."""
    tmp = tmp_path_factory.mktemp("wheel-install")
    assert ROOT not in tmp.parents
    # Build from a copy: a build in the checkout itself shares its build/ folder with every other build of it.
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "coderunner", src / "coderunner", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)])
    (wheel,) = dist.glob("*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[docker,server]"])
    return venv


def _remove_built(client: Any, tag: str, before: dict[str, str]) -> None:
    """Remove the image built under ``tag``, first moving back the sandbox tags (``<hash>``, ``latest``) it took."""
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(tag)
    except ImageNotFound:
        return
    if image.id in before.values():  # the build reproduced an image that was already there: keep it
        client.images.remove(tag)
        return
    for other in image.tags:
        if other in before:
            repo, _, name = other.rpartition(":")
            with contextlib.suppress(ImageNotFound):
                client.images.get(before[other]).tag(repo, name)
    client.images.remove(image.id, force=True)


@pytest.mark.timeout(1800)
def test_regular_install_builds_the_image_from_its_installed_files(
    docker_client: Any, installed_venv: Path, tmp_path: Path
) -> None:
    if not docker_client.images.list(name=OFFLINE_BASE):
        pytest.skip(f"the offline base {OFFLINE_BASE} is missing (build it with: sudo docker/build-base.sh)")
    name = _distribution_name()
    poison = tmp_path / "poison"
    poison.mkdir()
    for dist in {name, "coderunner"}:
        (poison / f"{_wheel_name(dist)}-{coderunner.__version__}-py3-none-any.whl").write_bytes(b"not a wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_FIND_LINKS"] = " ".join(filter(None, [str(poison), os.environ.get("PIP_FIND_LINKS", "")]))
    env["PATH"] = f"{installed_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    work = tmp_path / "work"
    work.mkdir()
    tag = f"coderunner-test-wheel:{secrets.token_hex(4)}"
    build = [str(installed_venv / "bin" / "coderunner"), "image", "build", "--base", OFFLINE_BASE]
    build += ["--datascience", "0", "--browser", "0", "--force", "--tag", tag]
    before = {t: image.id for image in docker_client.images.list(name=IMAGE_REPO) for t in image.tags}
    proc = subprocess.run(build, cwd=work, env=env, capture_output=True, text=True, check=False, timeout=1500)
    try:
        log = proc.stderr
        assert proc.returncode == 0, f"coderunner image build failed:\n{log[-4000:]}"
        out = docker_client.containers.run(
            tag, ["python3", "-c", "import coderunner; print(coderunner.__version__)"], network_mode="none", remove=True
        )
        assert out.decode().strip() == coderunner.__version__
        in_image = docker_client.containers.run(
            tag, ["python3", "-c", PROBE, name], network_mode="none", remove=True
        ).decode()
        in_venv = _run([str(installed_venv / "bin" / "python"), "-c", PROBE, name], cwd=work).stdout
        image_info, venv_info = json.loads(in_image), json.loads(in_venv)
        # The image holds the venv's package files exactly, from a wheel made of them (not one built or fetched).
        assert image_info.pop("generator") == [f"Generator: coderunner {coderunner.__version__} (installed package)"]
        venv_info.pop("generator")
        assert image_info == venv_info
        assert image_info["dist"] == coderunner.__version__
        assert "wheel from the installed package" in log, log
        assert "source tree" not in log, log
    finally:
        _remove_built(docker_client, tag, before)
