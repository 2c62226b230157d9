"""Unit tests of the pure core: validation, paths, output caps, settings, errors, task records."""

from __future__ import annotations

from pathlib import Path

import pytest

from coderunner import _core, errors
from coderunner.config import ENV_VARS, Settings
from coderunner.engine.output import CappedSink, StreamBuffer
from coderunner.models import ExecutionResult
from coderunner.tasks import TaskTable


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("py", "python"),
        ("Python3", "python"),
        ("sh", "bash"),
        ("shell", "bash"),
        ("JS", "javascript"),
        ("node", "javascript"),
        (None, "python"),
    ],
)
def test_language_aliases(alias: str | None, name: str) -> None:
    assert _core.normalize_language(alias) == name


def test_unknown_language_lists_supported() -> None:
    with pytest.raises(errors.ConfigurationError, match="python, bash, javascript"):
        _core.normalize_language("ruby")


@pytest.mark.parametrize("bad", [0, -1, 10**9, "5", True])
def test_bad_timeouts(bad: object) -> None:
    with pytest.raises(errors.InvalidRequestError):
        _core.validate_timeout(bad, None)  # type: ignore[arg-type]


def test_timeout_default_applies() -> None:
    assert _core.validate_timeout(None, 5.0) == 5.0
    assert _core.validate_timeout(2, 5.0) == 2.0


def test_resolve_in_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert _core.resolve_in_root(root, "a/b.txt") == root.resolve() / "a" / "b.txt"
    assert _core.resolve_in_root(root, str(root / "x")) == root.resolve() / "x"
    for bad in ("../x", "/etc/passwd", "a/../../x", "", "a\x00b"):
        with pytest.raises(errors.PathError):
            _core.resolve_in_root(root, bad)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(errors.PathError):
        _core.resolve_in_root(root, "link/secret")


def test_absolute_paths_are_taken_as_they_are_only_when_allowed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(errors.PathError, match="CODERUNNER_ABSOLUTE_PATHS"):
        _core.resolve_in_root(root, "/etc/passwd")
    assert _core.resolve_in_root(root, "/etc/../etc/passwd", absolute=True) == Path("/etc/passwd")
    # Relative paths stay confined even then: the session directory is still where they start.
    for bad in ("../x", "a/../../x"):
        with pytest.raises(errors.PathError):
            _core.resolve_in_root(root, bad, absolute=True)


def test_strip_ansi() -> None:
    assert _core.strip_ansi("\x1b[0;31mZeroDivisionError\x1b[0m: x") == "ZeroDivisionError: x"


def test_snapshot_diff(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    before = _core.snapshot_files(tmp_path)
    (tmp_path / "b").write_text("2")
    (tmp_path / "a").write_text("11")
    (tmp_path / ".coderunner").mkdir()
    (tmp_path / ".coderunner" / "spill").write_text("x")
    after = _core.snapshot_files(tmp_path)
    assert _core.diff_snapshots(before, after) == (["b"], ["a"])


def test_stream_buffer_keeps_head_and_tail_and_spills(tmp_path: Path) -> None:
    buf = StreamBuffer(100, tmp_path / "out.txt", ".coderunner/output/out.txt")
    text = "".join(f"{i:04d}\n" for i in range(1000))
    for i in range(0, len(text), 7):
        buf.write(text[i : i + 7])
    buf.close()
    shown = buf.text()
    assert buf.truncated
    assert shown.startswith(text[:50])
    assert shown.endswith(text[-50:])
    assert f"{len(text) - 100} characters truncated" in shown
    assert ".coderunner/output/out.txt" in shown
    assert (tmp_path / "out.txt").read_text() == text
    assert buf.spill_file() == ".coderunner/output/out.txt"


def test_stream_buffer_under_cap_is_untouched(tmp_path: Path) -> None:
    buf = StreamBuffer(100, tmp_path / "o", "o")
    buf.write("hello ")
    buf.write("world")
    assert buf.text() == "hello world"
    assert not buf.truncated and buf.spill_file() is None
    assert not (tmp_path / "o").exists()


def test_sink_callbacks_errors_do_not_break(tmp_path: Path) -> None:
    seen: list[str] = []

    def bad(_: str) -> None:
        raise RuntimeError("user callback bug")

    sink = CappedSink(
        limit=1000, spill_dir=tmp_path, spill_display_dir="d", exec_id="e", on_stdout=seen.append, on_stderr=bad
    )
    sink.stdout("a")
    sink.stderr("b")
    assert seen == ["a"] and sink.err.text() == "b"


def test_settings_from_env_and_overrides() -> None:
    env = {
        "CODERUNNER_TIMEOUT": "none",
        "CODERUNNER_MAX_SESSIONS": "3",
        "CODERUNNER_TRACK_FILES": "off",
        "CODERUNNER_BACKEND": "fake",
    }
    s = Settings.from_env(env)
    assert (s.timeout, s.max_sessions, s.track_files, s.backend) == (None, 3, False, "fake")
    assert Settings.from_env(env, max_sessions=5).max_sessions == 5
    with pytest.raises(errors.ConfigurationError, match="CODERUNNER_MAX_SESSIONS"):
        Settings.from_env({"CODERUNNER_MAX_SESSIONS": "many"})
    with pytest.raises(errors.ConfigurationError, match="Unknown option"):
        Settings.from_env({}, colour="blue")
    assert set(ENV_VARS) == {f for f in Settings.__dataclass_fields__}


def test_error_codes_are_stable_and_unique() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.CodeRunnerError)]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    assert errors.error_for_code("session_not_found", "gone").__class__ is errors.SessionNotFoundError
    assert errors.CapacityError("x").retryable and not errors.PathError("x").retryable
    assert errors.PathError("x").to_dict() == {"code": "path_not_allowed", "message": "x", "retryable": False}


def test_missing_dependency_names_the_extra() -> None:
    err = errors.MissingDependencyError("docker", "docker", "The Docker backend")
    assert "pip install 'coderunner-sandbox[docker]'" in str(err)


def test_task_table_state_machine() -> None:
    table = TaskTable(keep=2)
    t = table.new("s", "python")
    assert t.status == "pending"
    assert table.start(t.task_id)
    done = table.finish(t.task_id, ExecutionResult(status="error", exit_code=1))
    assert done.status == "failed" and done.is_complete
    # Final states never change.
    assert table.finish(t.task_id, ExecutionResult(status="ok")).status == "failed"
    c = table.new("s", "python")
    assert table.cancel_pending(c.task_id).status == "cancelled"
    assert not table.start(c.task_id)
    for _ in range(3):
        x = table.new("s", "python")
        table.start(x.task_id)
        table.finish(x.task_id, ExecutionResult(status="ok"))
    assert len([t for t in table.list() if t.is_complete]) == 2
    with pytest.raises(errors.TaskNotFoundError):
        table.get("nope")
