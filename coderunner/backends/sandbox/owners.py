"""Who owns a box: the labels every box carries, so that a crashed owner's leftovers are found and removed.

Provider-neutral: Docker puts these on its containers and its runtime directory's ``owner.json``; a
Kubernetes provider puts them on its pods. A box is an orphan when the process its labels name (pid and
start time, on this host) is gone.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping
from pathlib import Path

from coderunner.backends.sandbox.contract import (
    LABEL_MANAGED,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_RUNNER,
)
from coderunner.engine.processes import pid_signature, same_process

__all__ = ["host_id", "owner_alive", "owner_labels"]


def host_id() -> str:
    """The name of this machine that tells owners apart on a shared engine: hostname and boot id."""
    boot = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{socket.gethostname()}/{boot}"


def owner_labels(runner_id: str) -> dict[str, str]:
    """The labels of a box started by this process for the runner ``runner_id``."""
    me = os.getpid()
    return {
        LABEL_MANAGED: "1",
        LABEL_RUNNER: runner_id,
        LABEL_OWNER_PID: str(me),
        LABEL_OWNER_START: repr(pid_signature(me)),
        LABEL_OWNER_HOST: host_id(),
    }


def owner_alive(labels: Mapping[str, str]) -> bool:
    """Whether the process that the labels name still runs (on this host; labels of another host: unknown)."""
    try:
        pid, start = int(labels[LABEL_OWNER_PID]), float(labels[LABEL_OWNER_START])
    except (KeyError, ValueError):
        return False
    return same_process(pid, start)
