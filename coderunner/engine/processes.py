"""The processes the user's code started: tagged at birth, found wherever they went, killed; and the process limit.

Tracking. Every kernel starts with :data:`TAG_VAR` in its environment, a value naming the engine and the
kernel (``e-<pid>-<hex>:<hex>``). Every process the user's code starts inherits it, including those that
leave the kernel's process group (``setsid``) and those re-parented after a double fork, which killing
the group misses. We find them by scanning ``/proc/*/environ`` (readable for our own uid, without
starting anything), and add the kernel's descendants and its process-group and session members, which
also catches a child started with a scrubbed environment (``env -i``) as long as it stays attached.

Why a tag rather than the alternatives:

* ``PR_SET_CHILD_SUBREAPER`` would re-parent orphans to us, but the InProcess engine lives inside the
  caller's process: we would adopt (and have to reap) the orphans of everything the caller runs, and we
  still could not tell whose an adopted process is. The tag says which kernel, and engine, it belongs to.
  Killed orphans are collected by init (in the Docker sandbox, the container's ``--init``).
* A psutil children snapshot misses exactly the processes that matter: those already re-parented.
* The tag survives our own death: the next engine's orphan sweep finds a crashed engine's processes by
  the engine name in it (:func:`kill_engine_processes`).

A process can still escape by scrubbing its environment *and* detaching (``env -i setsid ...``); that
takes intent, and the sandboxing backends contain it anyway.

Killing during a fork bomb. Processes are frozen with SIGSTOP, scan after scan, until a scan finds no
new one (a frozen process cannot fork), then all are SIGKILLed. Only ``os.kill`` and reads of ``/proc``
are used: no new process or thread, which a bomb at the process limit would refuse us.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import sys
import time
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

__all__ = [
    "OWNER_FILE",
    "TAG_VAR",
    "ProcInfo",
    "ProcessLimit",
    "forget_at_exit",
    "kill_at_exit",
    "kill_engine_processes",
    "kill_leftovers",
    "leftovers",
    "new_tag",
    "pid_signature",
    "process_limit",
    "publish_owned_dir",
    "python_reap_code",
    "remove_stale_staging",
    "same_process",
    "scan",
]


class _KillsNow(Protocol):
    def kill_now(self) -> None: ...


_AT_EXIT: weakref.WeakSet[_KillsNow] = weakref.WeakSet()


def kill_at_exit(owner: _KillsNow) -> None:
    """Have ``owner.kill_now()`` run at interpreter exit (until :func:`forget_at_exit`).

    The one exit rule of coderunner: the code engine's kernels, the browser engine's Chromium and the Docker
    fleet's containers are all registered here. ``kill_now`` runs without an event loop and must not hang.
    """
    _AT_EXIT.add(owner)


def forget_at_exit(owner: _KillsNow) -> None:
    """Undo :func:`kill_at_exit` (the owner cleaned up already)."""
    _AT_EXIT.discard(owner)


@atexit.register
def _kill_all_at_exit() -> None:
    for owner in list(_AT_EXIT):
        with contextlib.suppress(Exception):  # one failing owner must not spare the others
            owner.kill_now()


def pid_signature(pid: int) -> float | None:
    """The process's start time, which tells a live pid from a reused one (None: no such process).

    The one process-identity rule of coderunner: the engine's kernel records and orphan sweep, the browser
    engine's Chromium, and the Docker fleet's owner labels all name a process by (pid, this signature).

    On Linux it is the start time in clock ticks since boot (``/proc/<pid>/stat``), which no clock change
    moves. psutil's ``create_time()`` adds the boot time, which Linux derives from the wall clock at every
    read: an NTP step or slew shifts it, and one process then sees another's start time move by a second,
    takes that live owner for dead, and sweeps its containers and directories as orphans.
    Elsewhere: psutil's ``create_time()``.
    """
    if sys.platform.startswith("linux"):
        stat = _read(f"/proc/{pid}/stat")
        try:
            # "pid (comm) state ..."; comm may hold spaces and parentheses; starttime is field 22.
            return float(stat[stat.rfind(b")") + 2 :].split()[19]) if stat else None
        except (IndexError, ValueError):
            return None
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def same_process(pid: int, signature: float | None) -> bool:
    """True while ``pid`` is the very process whose :func:`pid_signature` was ``signature``."""
    actual = pid_signature(pid)
    return actual is not None and signature is not None and abs(actual - signature) < 0.01


TAG_VAR = "CODERUNNER_KERNEL_TAG"
"""The environment variable that marks a kernel and every process started from it."""

_TAG_ENTRY = b"\0" + TAG_VAR.encode() + b"="
# A scan is repeated while it finds processes to freeze; a fork bomb converges in a few rounds, this bounds it.
_MAX_ROUNDS = 200


OWNER_FILE = "owner.json"
"""The file naming an owned runtime directory's owner process (pid and start signature)."""
# A directory being made lives under its staging name for milliseconds; one older than this was left by a crash.
_STAGING_MAX_AGE = 300.0


def publish_owned_dir(final: Path, owner: Mapping[str, object], subdirs: Collection[str] = ()) -> None:
    """Make ``final`` whole (``subdirs`` and ``owner.json``) under a staging name, then rename it into place.

    The orphan sweeps of other processes look only at finished names: one that saw a directory before its owner
    file (or a half-written one) would take it for a crashed owner's, remove it and kill what it had started.
    """
    staging = final.with_name(f".{final.name}.new")
    staging.mkdir(parents=True, mode=0o700)
    for sub in subdirs:
        (staging / sub).mkdir()
    (staging / OWNER_FILE).write_text(json.dumps(dict(owner)))
    staging.rename(final)


def remove_stale_staging(root: Path, pattern: str) -> None:
    """Remove staging directories (``pattern``, e.g. ``e-*``) that a crash caught before they were renamed.

    Nothing was started from them yet: they hold no processes and no mounts.
    """
    for staging in root.glob(f".{pattern}.new"):
        with contextlib.suppress(OSError):
            if time.time() - staging.stat().st_mtime > _STAGING_MAX_AGE:
                shutil.rmtree(staging, ignore_errors=True)


def new_tag(engine_name: str) -> str:
    """A fresh tag for one kernel of the engine whose directory is named ``engine_name``."""
    return f"{engine_name}:{secrets.token_hex(6)}"


def engine_of(tag: str) -> str:
    """The engine directory name a tag belongs to."""
    return tag.partition(":")[0]


@dataclass(frozen=True)
class ProcInfo:
    """One process, as read from ``/proc`` (or psutil elsewhere).

    Attributes:
        pid: Process id.
        ppid: Parent's process id.
        pgrp: Process group id.
        sid: Session id.
        zombie: True when it has exited and waits for its parent to collect its status.
        threads: Number of threads (each counts against the pids limit).
        start: Start time (clock ticks since boot on Linux): tells a reused pid apart.
        tag: The value of :data:`TAG_VAR` in its environment, if any and readable.
    """

    pid: int
    ppid: int
    pgrp: int
    sid: int
    zombie: bool
    threads: int
    start: float
    tag: str | None


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _tag_in(environ: bytes) -> str | None:
    i = (b"\0" + environ).find(_TAG_ENTRY)
    if i < 0:
        return None
    start = i + len(_TAG_ENTRY) - 1
    end = environ.find(b"\0", start)
    return environ[start : end if end >= 0 else len(environ)].decode("utf-8", "replace")


def start_mark(pid: int) -> float | None:
    """``pid``'s start time in the unit of :attr:`ProcInfo.start` on this system: its :func:`pid_signature`."""
    return pid_signature(pid)


def _scan_linux(tags: bool, since: float | None) -> dict[int, ProcInfo]:
    procs: dict[int, ProcInfo] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return procs
    for name in names:
        if not name.isdigit():
            continue
        stat = _read(f"/proc/{name}/stat")
        if stat is None:
            continue  # gone since the listing
        # "pid (comm) state ppid pgrp session ..."; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        try:
            state = fields[0]
            ppid, pgrp, sid, threads, start = (
                int(fields[1]),
                int(fields[2]),
                int(fields[3]),
                int(fields[17]),
                fields[19],
            )
        except (IndexError, ValueError):
            continue
        zombie = state in (b"Z", b"X")
        tag = None
        if tags and not zombie and (since is None or float(start) >= since):
            environ = _read(f"/proc/{name}/environ")  # EACCES for other users' processes: None
            tag = _tag_in(environ) if environ else None
        procs[int(name)] = ProcInfo(int(name), ppid, pgrp, sid, zombie, threads, float(start), tag)
    return procs


def _scan_psutil(tags: bool, since: float | None) -> dict[int, ProcInfo]:
    procs: dict[int, ProcInfo] = {}
    for proc in psutil.process_iter():
        try:
            with proc.oneshot():
                zombie = proc.status() == psutil.STATUS_ZOMBIE
                tag = None
                if tags and not zombie and (since is None or proc.create_time() >= since):
                    with contextlib.suppress(psutil.Error):
                        tag = proc.environ().get(TAG_VAR)
                procs[proc.pid] = ProcInfo(
                    proc.pid,
                    proc.ppid(),
                    os.getpgid(proc.pid),
                    os.getsid(proc.pid),
                    zombie,
                    proc.num_threads(),
                    proc.create_time(),
                    tag,
                )
        except (psutil.Error, OSError):
            continue
    return procs


def scan(*, tags: bool = True, since: float | None = None) -> dict[int, ProcInfo]:
    """Every process we can see, by pid; ``tags`` reads each one's :data:`TAG_VAR` (our uid's only).

    With ``since`` (a :func:`start_mark`), only processes started then or later have their tag read (reading
    every environment is most of a scan's cost); older ones are listed without it.
    """
    if sys.platform.startswith("linux"):
        return _scan_linux(tags, since)
    return _scan_psutil(tags, since)


def _descendants(procs: Mapping[int, ProcInfo], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def leftovers(procs: Mapping[int, ProcInfo], tags: Collection[str], kernel_pids: Collection[int] = ()) -> set[int]:
    """The live processes started from the given kernels: tagged, or attached to a live kernel. Kernels excluded.

    Args:
        procs: A :func:`scan`.
        tags: The kernels' tags (matched exactly).
        kernel_pids: Pids of kernels still running as ours: their descendants, process group and session
            count too. Leave out a dead kernel: its pid may belong to someone else by now.
    """
    found = {p.pid for p in procs.values() if p.tag is not None and p.tag in tags}
    for kpid in kernel_pids:
        # Kernels lead their own session and group, so these ids were created by the kernel itself.
        found |= {p.pid for p in procs.values() if p.pgrp == kpid or p.sid == kpid}
        found |= _descendants(procs, kpid)
    found.difference_update(kernel_pids)
    found.discard(os.getpid())
    return {pid for pid in found if pid in procs and not procs[pid].zombie}


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _kill_selected(
    select: Callable[[Mapping[int, ProcInfo]], set[int]], spare: Collection[int], since: float | None = None
) -> list[ProcInfo]:
    frozen: dict[int, ProcInfo] = {}
    for _ in range(_MAX_ROUNDS):
        procs = scan(since=since)
        new = [
            procs[pid]
            for pid in select(procs)
            if pid not in spare and (pid not in frozen or frozen[pid].start != procs[pid].start)
        ]
        if not new:
            break
        for proc in new:
            # Frozen first: a stopped process cannot fork, so the next scan sees everything there is.
            if _signal(proc.pid, signal.SIGSTOP):
                frozen[proc.pid] = proc
    for proc in frozen.values():
        _signal(proc.pid, signal.SIGKILL)  # delivered to stopped processes too
    return list(frozen.values())


def kill_leftovers(
    tags: Collection[str], kernel_pids: Collection[int] = (), *, since: float | None = None
) -> list[ProcInfo]:
    """Kill every live process started from the given kernels (see :func:`leftovers`); the kernels are spared.

    Args:
        tags: The kernels' tags.
        kernel_pids: Kernels that keep running: spared, while their descendants and group go.
        since: The :func:`start_mark` of the oldest of those kernels, when known: a process that carries a
            kernel's tag was started after it, so older ones need not have their environment read.

    Returns:
        The processes that were killed (as they were just before).
    """
    if not tags and not kernel_pids:
        return []
    return _kill_selected(lambda procs: leftovers(procs, tags, kernel_pids), kernel_pids, since)


def kill_engine_processes(engine_names: Collection[str]) -> list[ProcInfo]:
    """Kill every process tagged by the named engines, kernels included (engine close, exit, orphan sweep)."""
    if not engine_names:
        return []
    names, me = set(engine_names), os.getpid()

    def select(procs: Mapping[int, ProcInfo]) -> set[int]:
        return {p.pid for p in procs.values() if p.tag and not p.zombie and engine_of(p.tag) in names and p.pid != me}

    return _kill_selected(select, ())


def python_reap_code(pids: Collection[int]) -> str:
    """Python code that collects the exit status of the given children of the interpreter it runs in.

    A killed child stays a zombie, holding a slot of the process limit, until its parent waits for it.
    bash and node wait for their children themselves; Python's ``os.fork()`` children are nobody's
    business but the user's, so after killing them the engine asks the interpreter to collect them
    (for up to 2 s: a SIGKILLed process needs a moment to become a zombie).
    """
    return (
        "def __cr_reap(pids):\n"
        "    import os, time\n"
        "    end = time.monotonic() + 2\n"
        "    while pids and time.monotonic() < end:\n"
        "        for pid in list(pids):\n"
        "            try:\n"
        "                if os.waitpid(pid, os.WNOHANG)[0]:\n"
        "                    pids.discard(pid)\n"
        "            except ChildProcessError:\n"
        "                pids.discard(pid)\n"
        "        if pids:\n"
        "            time.sleep(0.01)\n"
        f"__cr_reap({set(pids)!r})\n"
        "del __cr_reap\n"
    )


# -- the process limit -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessLimit:
    """How many processes (and threads) may exist, and how many do.

    Attributes:
        used: Processes and threads counted against the limit now.
        limit: The most there may be.
        source: Where the figures come from, e.g. ``cgroup pids.max (/sys/fs/cgroup/pids.max)`` or ``RLIMIT_NPROC``.
    """

    used: int
    limit: int
    source: str

    @property
    def exhausted(self) -> bool:
        """True when (nearly) no process or thread can be started: a fork would fail or soon will."""
        return self.used >= self.limit - max(3, self.limit // 32)

    def describe(self) -> str:
        """``256 of 256 processes and threads are in use (cgroup pids.max ...)``."""
        return f"{self.used} of {self.limit} processes and threads are in use ({self.source})"


def _cgroup_dirs() -> list[Path]:
    """The pids-controller directories of our cgroup and its ancestors, innermost first."""
    text = _read("/proc/self/cgroup")
    if text is None:
        return []
    found: list[Path] = []
    for line in text.decode(errors="replace").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if "pids" in controllers.split(","):
            base = Path("/sys/fs/cgroup/pids")
        elif controllers == "":
            base = Path("/sys/fs/cgroup")  # the unified (v2) hierarchy
        else:
            continue
        own = base / rel.lstrip("/")
        # Inside a container without a cgroup namespace the path names the host's view; the container sees
        # its own cgroup mounted at the root of the hierarchy.
        start = own if own.is_dir() else base
        level = start
        while True:
            if level not in found:
                found.append(level)
            if level == base or level.parent == level:
                break
            level = level.parent
    return found


def _cgroup_limit() -> ProcessLimit | None:
    tightest: ProcessLimit | None = None
    for folder in _cgroup_dirs():
        maximum = _read(str(folder / "pids.max"))
        current = _read(str(folder / "pids.current"))
        if maximum is None or current is None or maximum.strip() == b"max":
            continue
        try:
            limit = ProcessLimit(int(current), int(maximum), f"cgroup pids.max, {folder / 'pids.max'}")
        except ValueError:
            continue
        if tightest is None or limit.limit - limit.used < tightest.limit - tightest.used:
            tightest = limit
    return tightest


def _nproc_limit() -> ProcessLimit | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    uid = os.getuid()
    if soft == resource.RLIM_INFINITY or uid == 0:
        return None  # no limit, or root, which the kernel exempts from it
    used = 0
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not name.isdigit():
            continue
        status = _read(f"/proc/{name}/status")
        if status is None:
            continue
        real_uid = threads = None
        for line in status.splitlines():
            if line.startswith(b"Uid:"):
                real_uid = int(line.split()[1])
            elif line.startswith(b"Threads:"):
                threads = int(line.split()[1])
        if real_uid == uid and threads:
            used += threads  # RLIMIT_NPROC counts every thread of the user, in every process
    return ProcessLimit(used, int(soft), f"RLIMIT_NPROC of uid {uid}") if used else None


def process_limit(*, include_rlimit: bool = True) -> ProcessLimit | None:
    """The tightest process limit that applies to the engine and its kernels, or None when none is known.

    The cgroup's ``pids.max``/``pids.current`` (v2, or v1's pids controller) when set: the Docker backend
    runs this engine in a container with ``--pids-limit``. Else, with ``include_rlimit``, the user's
    ``RLIMIT_NPROC`` (counting means reading every process's status: only worth it after a failure).
    """
    limit = _cgroup_limit()
    if limit is None and include_rlimit:
        limit = _nproc_limit()
    return limit
