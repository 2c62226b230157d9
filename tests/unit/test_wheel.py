"""The wheel made from the installed coderunner (what the Docker image installs): valid, and it installs offline."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import coderunner
from coderunner.backends.docker.wheel import DISTRIBUTION, WHEEL_NAME, build_installed_wheel, installed_distribution


def test_the_distribution_has_its_own_name() -> None:
    # "coderunner" on PyPI is an unrelated project: the installed metadata must carry ours.
    assert DISTRIBUTION == "coderunner-sandbox" and WHEEL_NAME == "coderunner_sandbox"
    assert metadata.version(DISTRIBUTION) == coderunner.__version__
    assert installed_distribution().metadata["Name"] == DISTRIBUTION


def test_installed_wheel_is_valid_and_installs_without_an_index(tmp_path: Path) -> None:
    wheel = build_installed_wheel(tmp_path / "own")
    assert wheel.parent == tmp_path / "own"
    assert wheel.name == f"{WHEEL_NAME}-{coderunner.__version__}-py3-none-any.whl"
    info = f"{WHEEL_NAME}-{coderunner.__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names[-1] == f"{info}/RECORD"
        assert {f"{info}/METADATA", f"{info}/WHEEL", f"{info}/entry_points.txt", "coderunner/__init__.py"} <= set(names)
        assert "coderunner/backends/sandbox.Dockerfile" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert {n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA")} == {info}
        assert f"Name: {DISTRIBUTION}\n" in archive.read(f"{info}/METADATA").decode()
        assert "Root-Is-Purelib: true" in archive.read(f"{info}/WHEEL").decode()
        rows = list(csv.reader(io.StringIO(archive.read(f"{info}/RECORD").decode())))
        assert sorted(row[0] for row in rows) == sorted(names)
        for name, digest, size in rows:
            if name == f"{info}/RECORD":
                assert (digest, size) == ("", "")
                continue
            data = archive.read(name)
            algo, _, value = digest.partition("=")
            assert algo == "sha256"
            assert base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)) == hashlib.sha256(data).digest(), name
            assert int(size) == len(data), name
        # The package files are the running package's, byte for byte.
        package = Path(coderunner.__file__).parent
        assert archive.read("coderunner/_version.py") == (package / "_version.py").read_bytes()
    # The same files make the same wheel, byte for byte (the image layer's cache key).
    assert build_installed_wheel(tmp_path / "again").read_bytes() == wheel.read_bytes()

    target = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True,
        env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CONFIG_FILE": os.devnull},
        capture_output=True,
        timeout=120,
    )
    assert (target / info / "RECORD").is_file()
    probe = (
        "import coderunner, importlib.metadata as m, sys; "
        f"print(coderunner.__file__); print(m.version({DISTRIBUTION!r})); "
        "from coderunner.backends.docker import find_dockerfile; print(find_dockerfile())"
    )
    # -I: isolated (no user site, no PYTHONPATH, no cwd), with only the target dir added: the editable install
    # of this checkout stays out of sight.
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); exec({probe!r})"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    ).stdout.splitlines()
    assert out[0] == str(target / "coderunner" / "__init__.py")
    assert out[1] == coderunner.__version__
    assert out[2] == str(target / "coderunner" / "backends" / "sandbox.Dockerfile")


def test_a_package_without_its_installed_metadata_is_refused(tmp_path: Path) -> None:
    # A copy of the package with no dist-info of its own: the editable install's metadata is not its metadata,
    # so no wheel is made (and nothing falls back to an index).
    shutil.copytree(Path(coderunner.__file__).parent, tmp_path / "coderunner", ignore=shutil.ignore_patterns("*.pyc"))
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "from pathlib import Path\n"
        "from coderunner.errors import BackendError\n"
        "from coderunner.backends.docker.wheel import build_installed_wheel\n"
        "try:\n"
        f"    build_installed_wheel(Path({str(tmp_path / 'own')!r}))\n"
        "except BackendError as exc:\n"
        "    print(exc.code, exc.message)\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path, timeout=120
    ).stdout
    assert out.startswith("backend "), out
    assert f"is not an installed '{DISTRIBUTION}' distribution" in out
    assert not (tmp_path / "own").exists()
