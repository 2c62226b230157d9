"""Process identity (pid + start signature): stable across processes and clock changes, so sweeps spare live owners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from coderunner import CodeRunner
from coderunner.backends.sandbox.owners import owner_alive, owner_labels
from coderunner.engine.engine import reap_orphans
from coderunner.engine.processes import pid_signature, same_process

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the boot-time clock is Linux's")


def _step_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an NTP step or slew does as psutil sees it: Linux derives the boot time from the wall clock per read."""
    from psutil import _pslinux

    booted = _pslinux.boot_time()
    monkeypatch.setattr(_pslinux, "boot_time", lambda: booted + 1.0)


def test_another_process_reads_the_same_signature() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from coderunner.engine.processes import pid_signature as s; print(repr(s(os.getppid())))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert float(out) == pid_signature(os.getpid())


def test_a_process_that_ended_is_not_the_same_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    signature = pid_signature(child.pid)
    assert signature is not None
    child.wait()
    assert not same_process(child.pid, signature)
    assert pid_signature(child.pid) is None


@linux_only
def test_a_clock_step_does_not_make_a_live_owner_look_dead(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = owner_labels("r-test")
    signature = pid_signature(os.getpid())
    before = psutil.Process().create_time()
    _step_the_clock(monkeypatch)
    assert psutil.Process().create_time() == pytest.approx(before + 1.0)  # the step is real to psutil
    assert owner_alive(labels)
    assert same_process(os.getpid(), signature)


@linux_only
def test_a_sweep_after_a_clock_step_spares_a_live_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=0) as runner:
        runner.execute("x = 42")
        _step_the_clock(monkeypatch)
        # Another engine starting now runs this sweep over the shared runtime directory.
        assert reap_orphans(tmp_path) == 0
        assert runner.execute("print(x)").stdout == "42\n"
