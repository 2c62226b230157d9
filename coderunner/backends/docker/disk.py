"""Size-capped storage for Docker sessions: a sparse ext4 image per session, loop-mounted on the host.

Why a filesystem of its own: ``/work`` (the session directory) and the agent's socket directory are bind mounts
from the host, so without a cap ``fallocate -l 3G /work/big`` fills the host's disk. Docker's ``--storage-opt
size=`` needs XFS with project quotas, which an ordinary ext4 host does not have; a loop-mounted image works
everywhere the host user is root (the usual Docker host), costs about 25 ms per session (mkfs + mount + umount,
measured by ``benchmarks/docker_session_start.py``; the warm pool hides it) and takes only the blocks really
written, since the image file is sparse.

Layout of one session's storage directory (owned by the host user, never mounted into the container)::

    <dir>/disk.img     the sparse image (size = the disk limit)
    <dir>/fs/          its mount point (mounted nosuid,nodev); the root stays the host user's
    <dir>/fs/work      -> the container's /work
    <dir>/fs/sock      -> the container's /run/coderunner (the agent's socket)

Without root, or without ``mkfs.ext4``/``mount``, there is no way to cap the size: :func:`disk_limit_support`
says why, and the backend then refuses an explicit ``disk_limit`` and warns once for the default.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from coderunner.errors import BackendError

__all__ = ["SessionStorage", "disk_limit_support", "free_bytes", "size_text", "unmount_below"]

_MKFS = "mkfs.ext4"


def disk_limit_support() -> str | None:
    """None when this host can cap a session's disk, else the reason it cannot (for messages)."""
    if not hasattr(os, "getuid") or os.getuid() != 0:
        return "a size-capped session disk is a loop-mounted filesystem, which needs root on the Docker host"
    for tool in (_MKFS, "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install e2fsprogs mount)"
    if not Path("/dev/loop-control").exists() and not Path("/dev/loop0").exists():
        return "this host has no loop devices (/dev/loop-control)"
    return None


def _run(cmd: list[str], doing: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BackendError(f"{doing} failed ({' '.join(cmd[:2])} exit {proc.returncode}): {proc.stderr.strip()[-500:]}")


class SessionStorage:
    """The writable storage of one session: ``work`` (its /work) and ``sock_dir`` (the agent's socket).

    Args:
        root: The storage directory (created; removed by :meth:`remove`).
        disk_limit: Bytes the session may write to ``work`` and ``sock_dir`` together; None: no cap (plain
            directories on the host disk).
        uid: Owner of ``work`` and ``sock_dir`` (the container's user).
        gid: Their group.
        work: A directory of the caller's to use as ``work`` instead (never capped, never removed).
    """

    def __init__(self, root: Path, *, disk_limit: int | None, uid: int, gid: int, work: Path | None = None) -> None:
        self.root = root
        self.disk_limit = disk_limit
        self.mounted = False
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        base = root
        try:
            if disk_limit is not None:
                base = self._mount(disk_limit)
            self.sock_dir = base / "sock"
            self.owns_work = work is None
            self.work = work if work is not None else base / "work"
            for folder in (self.sock_dir, self.work):
                folder.mkdir(parents=True, exist_ok=True)
                # Ours only: a directory the caller passed as working_dir keeps its owner.
                if os.getuid() == 0 and uid != 0 and (folder == self.sock_dir or self.owns_work):
                    os.chown(folder, uid, gid)
        except BaseException:
            self.remove()
            raise

    def _mount(self, size: int) -> Path:
        image, mount_point = self.root / "disk.img", self.root / "fs"
        with open(image, "wb") as fh:
            fh.truncate(size)  # sparse: only what is written takes host blocks
        # No journal, lazy tables: the fastest mkfs (about 12 ms for 2 GiB); a session disk dies with its session.
        _run(
            [_MKFS, "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard", str(image)],
            "Making the session's disk",
        )
        mount_point.mkdir(mode=0o755)
        _run(["mount", "-o", "loop,nosuid,nodev,noatime", str(image), str(mount_point)], "Mounting the session's disk")
        self.mounted = True
        with contextlib.suppress(OSError):
            (mount_point / "lost+found").rmdir()
        os.chmod(mount_point, 0o755)  # the container never sees this root, only the two folders in it
        return mount_point

    def clear_sock_dir(self) -> None:
        """Empty the socket directory (for a new container taking the storage over).

        What the previous container left there (its dead socket, or anything its code planted: a symlink, a
        server of its own) must not be mistaken for the new agent.
        """
        for entry in os.scandir(self.sock_dir):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def free(self) -> int | None:
        """Bytes still free on the capped disk (None when there is no cap)."""
        if not self.mounted:
            return None
        return free_bytes(self.root / "fs")

    def remove(self) -> None:
        """Unmount the disk and delete everything (the caller's own ``work`` stays). Idempotent."""
        if self.mounted:
            if not _unmount(self.root / "fs"):
                return  # never delete through a mount that is still there: it would empty the disk, not free it
            self.mounted = False
        shutil.rmtree(self.root, ignore_errors=True)


def size_text(n: float | None) -> str:
    """A byte count for people: GiB from 1 GiB up, MiB below, '?' when unknown."""
    if n is None:
        return "?"
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


def free_bytes(path: Path) -> int | None:
    """Bytes free to an unprivileged writer on the filesystem holding ``path`` (None if unreadable)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _unmount(path: Path) -> bool:
    proc = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return True
    # Busy (a container still holds it): detach it now, the kernel frees it when the last user goes.
    lazy = subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True, check=False)
    return lazy.returncode == 0 or not os.path.ismount(path)


def unmount_below(root: Path) -> bool:
    """Unmount every mount under ``root`` (deepest first), e.g. before removing a crashed runner's folder.

    Returns:
        True when nothing is mounted under ``root`` any more.
    """
    prefix = str(root.resolve()).rstrip("/") + "/"
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return True
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) > 1:
            point = fields[1].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    return all(_unmount(Path(point)) for point in sorted(points, key=len, reverse=True))
