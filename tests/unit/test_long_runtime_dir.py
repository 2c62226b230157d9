"""A runtime directory too long for unix socket paths still works: the kernel's sockets go to a short private one.

Found by running the suite under pytest-xdist, whose temporary paths are longer: ipykernel's ipc endpoints
are file paths, and one past ``sun_path``'s 108 bytes made every Python session fail to start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from coderunner import CodeRunner
from coderunner.engine.base import ipc_dir, ipc_leftovers


def test_python_runs_under_a_runtime_dir_too_long_for_socket_paths(tmp_path: Path) -> None:
    root = tmp_path / ("r" * 120)
    assert len(os.fsencode(root)) > 108
    with CodeRunner(runtime_dir=str(root), pool_size=0) as runner:
        assert runner.execute("print(6 * 7)").stdout == "42\n"
        engine_name = runner.backend.engine.dir.name  # type: ignore[attr-defined]
        assert ipc_leftovers(engine_name), "the kernel's sockets should be in the short directory"
        info = ipc_dir().lstat()
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
    assert not ipc_leftovers(engine_name), "closing the session removes its sockets"


def test_a_short_runtime_dir_keeps_the_sockets_in_it() -> None:
    # Not tmp_path: under pytest-xdist its path alone is long enough to need the short directory.
    short = Path(tempfile.mkdtemp(prefix="cr-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, short, ignore_errors=True)
        runner = stack.enter_context(CodeRunner(runtime_dir=str(short), pool_size=0))
        assert runner.execute("print(1)").stdout == "1\n"
        engine = runner.backend.engine  # type: ignore[attr-defined]
        assert not ipc_leftovers(engine.dir.name)
        assert any(p.is_socket() for p in engine.dir.iterdir())
