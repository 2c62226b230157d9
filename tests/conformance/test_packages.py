"""Conformance: install_packages puts a package where the session's interpreter finds it (offline, local files)."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from coderunner import CodeRunner, InvalidRequestError, Session

NAME = "coderunner_probe_pkg"


def _wheel(folder: Path) -> Path:
    """Build a minimal pure-Python wheel by hand, so the test needs no network and no build backend."""
    files = {
        f"{NAME}/__init__.py": b"ANSWER = 42\n",
        f"{NAME}-0.1.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {NAME}\nVersion: 0.1\n".encode(),
        f"{NAME}-0.1.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{NAME}-0.1.dist-info/RECORD,,")
    path = folder / f"{NAME}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{NAME}-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def test_install_python_package_from_a_local_wheel(runner: Session, tmp_path: Path) -> None:
    wheel = runner.upload_file(str(_wheel(tmp_path)))
    try:
        result = runner.install_packages([f"./{wheel.path}"])
        assert result.status == "ok", result
        assert runner.execute(f"import {NAME}; print({NAME}.ANSWER)").stdout == "42\n"
    finally:
        runner.execute(
            f"import subprocess, sys; subprocess.run([sys.executable, '-m', 'pip', 'uninstall', '-y', '-q', '{NAME}'])"
        )


def test_install_javascript_package_from_a_local_folder(runner: Session) -> None:
    runner.write_file("localpkg/package.json", json.dumps({"name": "localpkg", "version": "1.0.0", "main": "index.js"}))
    runner.write_file("localpkg/index.js", "module.exports = { answer: 42 };")
    result = runner.install_packages(["./localpkg"], "javascript")
    assert result.status == "ok", result
    assert runner.execute("console.log(require('localpkg').answer)", "javascript").stdout == "42\n"


@pytest.mark.parametrize("bad", ["--index-url=http://evil", "", "pkg; rm -rf /", "$(id)"])
def test_install_refuses_options_and_shell(shared_runner: CodeRunner, bad: str) -> None:
    with pytest.raises(InvalidRequestError):
        shared_runner.install_packages([bad])
