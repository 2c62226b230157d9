"""Conformance: moving files in and out of a session, and the path rules that keep them inside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coderunner import FileNotFoundInSessionError, PathError, PermissionDeniedError, Session


def test_binary_round_trip(runner: Session, tmp_path: Path) -> None:
    payload = os.urandom(1_000_000) + bytes(range(256))
    local = tmp_path / "blob.bin"
    local.write_bytes(payload)
    info = runner.upload_file(str(local), "in/blob.bin")
    assert info.path == "in/blob.bin" and info.size == len(payload)
    # The code sees exactly the uploaded bytes.
    digest = runner.execute("import hashlib; print(hashlib.sha256(open('in/blob.bin','rb').read()).hexdigest())")
    import hashlib

    assert digest.stdout.strip() == hashlib.sha256(payload).hexdigest()
    out = tmp_path / "back.bin"
    assert runner.download_file("in/blob.bin", out) == payload
    assert out.read_bytes() == payload


def test_upload_defaults_to_the_local_name(runner: Session, tmp_path: Path) -> None:
    local = tmp_path / "notes.txt"
    local.write_text("hello")
    assert runner.upload_file(str(local)).path == "notes.txt"
    assert runner.execute("print(open('notes.txt').read())").stdout == "hello\n"


def test_files_written_by_code_can_be_downloaded_and_listed(runner: Session) -> None:
    runner.execute("import os; os.makedirs('out', exist_ok=True); open('out/r.json','w').write('{}')")
    assert runner.download_file("out/r.json") == b"{}"
    listing = {f.path: f for f in runner.list_files()}
    assert listing["out"].is_dir
    assert [f.path for f in runner.list_files("out")] == ["out/r.json"]


@pytest.mark.parametrize("bad", ["../escape.txt", "a/../../escape.txt", "", "\x00"])
def test_relative_paths_cannot_escape_the_session(used_session: Session, bad: str) -> None:
    with pytest.raises(PathError):
        used_session.write_file(bad, "x")
    with pytest.raises(PathError):
        used_session.download_file(bad)


# Backends whose sandbox has a filesystem of its own: there an absolute path names a file of the box.
_OWN_FILESYSTEM = {"docker", "docker-runsc"}


def test_absolute_paths_follow_the_backends_rule(runner: Session, backend_name: str) -> None:
    if backend_name not in _OWN_FILESYSTEM:
        # They would be the host's: refused, and the message names the rule so an agent knows what to do.
        for path in ("/etc/passwd", "/tmp/x.txt"):
            with pytest.raises(PathError, match="absolute_paths"):
                runner.write_file(path, "x")
            with pytest.raises(PathError, match="relative to the session directory"):
                runner.download_file(path)
        return
    info = runner.write_file("/tmp/abs/notes.txt", "from the host")
    assert info.path == "/tmp/abs/notes.txt" and info.size == len("from the host")
    assert runner.execute("print(open('/tmp/abs/notes.txt').read())").stdout == "from the host\n"
    runner.execute("with open('/tmp/abs/made.bin', 'wb') as f: f.write(bytes(range(256)))")
    assert runner.download_file("/tmp/abs/made.bin") == bytes(range(256))
    assert [f.path for f in runner.list_files("/tmp/abs")] == ["/tmp/abs/made.bin", "/tmp/abs/notes.txt"]
    assert b"root:" in runner.download_file("/etc/passwd")  # readable by anyone, in the box as on any system
    # The sandbox's user has the rights it has inside: no more.
    with pytest.raises(PermissionDeniedError):
        runner.write_file("/etc/passwd", "x")
    with pytest.raises(PermissionDeniedError):
        runner.download_file("/etc/shadow")
    with pytest.raises(FileNotFoundInSessionError):
        runner.download_file("/tmp/abs/nope.txt")


def test_symlinks_cannot_escape_the_session(runner: Session) -> None:
    runner.execute("ln -s /etc outside_link && ln -s /etc/hostname host_link", "bash")
    with pytest.raises(PathError):
        runner.download_file("outside_link/passwd")
    with pytest.raises(PathError):
        runner.download_file("host_link")
    with pytest.raises(PathError):
        runner.write_file("outside_link/evil.txt", "x")


def test_missing_file_is_a_clear_error(used_session: Session) -> None:
    with pytest.raises(FileNotFoundInSessionError, match="list_files"):
        used_session.download_file("nope.txt")


def test_result_is_readable_by_key_and_attribute(used_session: Session) -> None:
    result = used_session.execute("print('hi')")
    assert result["stdout"] == result.stdout == "hi\n"
    assert result["output"] == "hi\n"  # InstaVM's name for stdout
    with pytest.raises(KeyError):
        result["nope"]
