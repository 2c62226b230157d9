"""The languages sessions run, in one table: names and aliases, the kernel that runs each, its installer, pooling."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALIASES", "LANGUAGES", "Language", "by_name"]


@dataclass(frozen=True)
class Language:
    """One language a session can run.

    Attributes:
        name: The canonical name (what results and the wire say).
        aliases: Other names requests may use (case-insensitive).
        kernel_module: The module of the engine's kernel for it (imported only when a session uses it).
        kernel_class: The kernel's class in that module.
        program: The executable the kernel needs beside Python (None: Python itself runs it).
        installer: The package manager ``install_packages`` uses ('pip', 'npm'; None: none).
        pooled: Warm kernels are kept ready for it (only Python is slow to start, ~0.6 s; bash and node
            start in tens of milliseconds).
    """

    name: str
    aliases: tuple[str, ...]
    kernel_module: str
    kernel_class: str
    program: str | None
    installer: str | None
    pooled: bool


_TABLE = (
    Language(
        "python",
        ("py", "python3", "ipython"),
        "coderunner.engine.python",
        "PythonKernel",
        program=None,
        installer="pip",
        pooled=True,
    ),
    Language(
        "bash",
        ("sh", "shell"),
        "coderunner.engine.bash",
        "BashKernel",
        program="bash",
        installer=None,
        pooled=False,
    ),
    Language(
        "javascript",
        ("js", "node", "nodejs"),
        "coderunner.engine.node",
        "NodeKernel",
        program="node",
        installer="npm",
        pooled=False,
    ),
)

LANGUAGES: tuple[str, ...] = tuple(lang.name for lang in _TABLE)
"""The canonical names, in the order they are listed to users."""
ALIASES: dict[str, str] = {
    **{lang.name: lang.name for lang in _TABLE},
    **{alias: lang.name for lang in _TABLE for alias in lang.aliases},
}
"""Every accepted name (canonical ones included) -> its canonical name."""
_BY_NAME = {lang.name: lang for lang in _TABLE}


def by_name(name: str) -> Language:
    """The language of a canonical name (see :func:`coderunner._core.normalize_language` for aliases).

    Raises:
        KeyError: ``name`` is not a canonical language name.
    """
    return _BY_NAME[name]
