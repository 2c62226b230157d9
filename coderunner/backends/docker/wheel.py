"""A wheel of the running coderunner, made from its installed files: no build, no index.

The Docker backend installs coderunner in the sandbox image from a wheel made on the host. From a source
checkout (:func:`source_tree`) the wheel is built from the tree; otherwise :func:`build_installed_wheel`
writes it from what is installed: the files of the imported ``coderunner`` package plus the metadata of its
installed distribution, with a fresh ``RECORD``. The image then runs exactly the code the host runs, and no
index is ever asked for coderunner, which matters because the name ``coderunner`` on PyPI belongs to an
unrelated project: ours is :data:`DISTRIBUTION`.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import zipfile
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from coderunner._version import __version__
from coderunner.errors import BackendError

__all__ = ["DISTRIBUTION", "WHEEL_NAME", "build_installed_wheel", "installed_distribution", "source_tree"]

DISTRIBUTION = "coderunner-sandbox"
"""The distribution name (``pip install coderunner-sandbox``); the import name stays ``coderunner``."""

WHEEL_NAME = re.sub(r"[-_.]+", "_", DISTRIBUTION).lower()
"""The name as wheel file names and ``.dist-info`` folders spell it (``coderunner_sandbox-0.1.0-py3-none-any.whl``)."""

# Written by the installer, not part of a wheel (RECORD and WHEEL are written afresh).
_NOT_IN_WHEEL = frozenset({"INSTALLER", "REQUESTED", "RECORD", "WHEEL", "direct_url.json"})
# A fixed timestamp: the same installed files make the same wheel, byte for byte.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _package_dir() -> Path:
    return Path(__file__).resolve().parents[2]


def source_tree() -> Path | None:
    """The source checkout the running coderunner is imported from, or None when it runs from an installed copy.

    A checkout is the package's parent folder holding this distribution's ``pyproject.toml`` (an editable
    install, or the tree on ``sys.path``); site-packages never holds one.
    """
    root = _package_dir().parent
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if re.search(rf'(?m)^name\s*=\s*"{re.escape(DISTRIBUTION)}"\s*$', text) else None


def _owns(dist: metadata.Distribution, package: Path) -> bool:
    """Whether ``dist`` is the installation the package at ``package`` was imported from."""
    for file in dist.files or []:
        if (
            file.parts == (package.name, "__init__.py")
            and Path(str(dist.locate_file(file))).resolve() == package / "__init__.py"
        ):
            return True
    # An editable install records no package files, only where its source lives.
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return False
    url = urlparse(str(direct.get("url", "")))
    editable = bool((direct.get("dir_info") or {}).get("editable"))
    return editable and url.scheme == "file" and Path(unquote(url.path)).resolve() == package.parent


def installed_distribution() -> metadata.Distribution:
    """The installed :data:`DISTRIBUTION` that the running ``coderunner`` package belongs to.

    Raises:
        BackendError: no installed distribution of that name holds this package (it was copied without its
            metadata, or another install shadows it on ``sys.path``), or its version is not the running one.
    """
    package = _package_dir()
    found = [dist for dist in metadata.distributions(name=DISTRIBUTION) if _owns(dist, package)]
    if not found:
        raise BackendError(
            f"The running coderunner ({package}) is not an installed '{DISTRIBUTION}' distribution, so no wheel "
            f"of it can be made for the sandbox image. Install it with pip install '{DISTRIBUTION}[docker]', or "
            "set CODERUNNER_DOCKER_IMAGE to an image built with 'coderunner image build'."
        )
    # A source checkout may also hold the *.egg-info a setuptools build left there, found through the checkout on
    # sys.path: pip's own record of the install (a .dist-info, with METADATA) is the one to build from.
    found.sort(key=lambda d: d.read_text("METADATA") is None)
    dist = found[0]
    if dist.version != __version__:
        raise BackendError(
            f"The installed '{DISTRIBUTION}' metadata says version {dist.version} but the running coderunner is "
            f"{__version__} ({package}): reinstall it."
        )
    return dist


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _metadata_files(dist: metadata.Distribution) -> dict[str, bytes]:
    """The distribution's own ``.dist-info`` files (METADATA, entry points, licenses), by path inside it."""
    names: set[str] = set()
    for file in dist.files or []:
        parts = file.parts
        if len(parts) >= 2 and parts[0].endswith(".dist-info") and ".." not in parts:
            names.add("/".join(parts[1:]))
    names |= {"METADATA", "entry_points.txt", "top_level.txt"}
    out: dict[str, bytes] = {}
    for name in sorted(names - _NOT_IN_WHEEL):
        try:
            text = dist.read_text(name)
        except (OSError, UnicodeDecodeError) as exc:
            raise BackendError(f"Reading {name} of the installed '{DISTRIBUTION}' distribution failed: {exc}") from None
        if text is not None:
            out[name] = text.encode("utf-8")
    if "METADATA" not in out:
        raise BackendError(f"The installed '{DISTRIBUTION}' distribution has no METADATA: reinstall it.")
    return out


def build_installed_wheel(dest: Path) -> Path:
    """Write a wheel of the running coderunner into the folder ``dest`` and return its path.

    The wheel holds every file of the imported ``coderunner`` package (compiled bytecode left out) and the
    ``.dist-info`` metadata of its installed distribution (METADATA, entry points), with a WHEEL and a RECORD
    written afresh from the files' current contents, so it installs with ``pip install --no-index``. For a
    regular install these are the files pip installed; nothing is built and no index is asked.

    Raises:
        BackendError: see :func:`installed_distribution`; or the package's files cannot be read.
    """
    dist = installed_distribution()
    version = dist.version.replace("-", "_")
    info = f"{WHEEL_NAME}-{version}.dist-info"
    package = _package_dir()
    entries: list[tuple[str, bytes, int]] = []
    try:
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                entries.append((f"{package.name}/{path.relative_to(package).as_posix()}", path.read_bytes(), mode))
    except OSError as exc:
        raise BackendError(f"Reading the installed coderunner package at {package} failed: {exc}") from None
    entries += [(f"{info}/{name}", data, 0o644) for name, data in _metadata_files(dist).items()]
    wheel_text = f"Wheel-Version: 1.0\nGenerator: coderunner {__version__} (installed package)\n"
    entries.append((f"{info}/WHEEL", (wheel_text + "Root-Is-Purelib: true\nTag: py3-none-any\n").encode(), 0o644))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data, _ in entries:
        writer.writerow([name, _record_hash(data), len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    entries.append((f"{info}/RECORD", record.getvalue().encode(), 0o644))
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{WHEEL_NAME}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in entries:
            item = zipfile.ZipInfo(name, date_time=_EPOCH)
            item.external_attr = (0o100000 | mode) << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(item, data)
    return target
