"""The sandbox containers' confinement: :class:`ContainerOptions` (memory, CPUs, network, disk, runtime)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from coderunner._env import env_text
from coderunner.errors import ConfigurationError

if TYPE_CHECKING:
    pass


# -- options ---------------------------------------------------------------------------------------

DEFAULT_DISK_LIMIT = "2g"
"""What a session may write to ``/work`` unless configured otherwise (``disk_limit``)."""
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(value: str | int, *, name: str = "memory") -> int:
    """Turn ``"512m"``, ``"1g"``, ``"1.5GiB"`` or a byte count into bytes.

    Raises:
        ConfigurationError: The value is not a size or is below 32 MiB.
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a size such as '1g', not {value!r}.")
    if isinstance(value, int):
        size = value
    else:
        match = _MEMORY.match(str(value))
        if not match:
            raise ConfigurationError(f"{name}={value!r} is not a size; use e.g. '512m' or '2g'.")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < 32 * 1024**2:
        raise ConfigurationError(f"{name}={value!r} is too small; a session needs at least '32m' (use '256m' or more).")
    return size


@dataclasses.dataclass(frozen=True)
class ContainerOptions:
    """How a session's container is confined. Every field is a per-runner and per-session option.

    Attributes:
        network: False/'none' (default): loopback only. True/'default': the engine's default network.
            'host' or any network name: that network.
        memory: Memory limit (swap disabled), e.g. '512m', '2g'.
        cpus: CPU limit (fractions allowed).
        pids_limit: Most processes + threads at once (a fork bomb stops here); at least 64 under gVisor.
        runtime: OCI runtime ('runsc' for gVisor); None: the engine's default (runc).
        read_only: Read-only root filesystem (``/work``, ``/tmp`` and ``$HOME`` stay writable).
        tmpfs_size: Size of each of the ``/tmp`` and ``$HOME`` tmpfs mounts (counted in ``memory``).
        user: 'uid' or 'uid:gid' inside the container; None: yours, or 1000 when you are root.
        disk_limit: Most bytes the session may write to ``/work`` (a loop-mounted filesystem of that size on the
            host, see :mod:`coderunner.backends.docker.disk`); None: no cap. Not applied to a ``working_dir`` of
            your own, which is mounted as it is.
    """

    network: bool | str = False
    memory: str | int = "1g"
    cpus: float = 1.0
    pids_limit: int = 256
    runtime: str | None = None
    read_only: bool = True
    tmpfs_size: str = "256m"
    user: str | None = None
    disk_limit: str | int | None = DEFAULT_DISK_LIMIT

    NAMES = ("network", "memory", "cpus", "pids_limit", "runtime", "read_only", "tmpfs_size", "user", "disk_limit")

    def __post_init__(self) -> None:
        parse_memory(self.memory)
        parse_memory(self.tmpfs_size)
        if self.disk_limit is not None:
            parse_memory(self.disk_limit, name="disk_limit")
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, (int, float)) or not 0 < self.cpus <= 1024:
            raise ConfigurationError(f"cpus={self.cpus!r} must be a positive number such as 1 or 0.5.")
        if isinstance(self.pids_limit, bool) or not isinstance(self.pids_limit, int) or self.pids_limit < 16:
            raise ConfigurationError(f"pids_limit={self.pids_limit!r} must be a whole number of at least 16.")
        if self.runtime == "runsc" and self.pids_limit < 64:
            raise ConfigurationError("gVisor (runtime='runsc') needs pids_limit of at least 64.")
        if not isinstance(self.network, (bool, str)) or (isinstance(self.network, str) and not self.network.strip()):
            raise ConfigurationError(f"network={self.network!r} must be True/False, 'none', 'host' or a network name.")

    @property
    def network_mode(self) -> str | None:
        """The Docker network mode: 'none', None (the engine's default network), or a name."""
        if self.network is False or self.network in ("none", "0", "false", "off"):
            return "none"
        if self.network is True or self.network in ("default", "1", "true", "on"):
            return None
        return str(self.network)

    def with_overrides(self, overrides: Mapping[str, Any]) -> ContainerOptions:
        """A copy with ``overrides`` applied (None values are ignored).

        Raises:
            ConfigurationError: An unknown option name or an invalid value.
        """
        unknown = set(overrides) - set(self.NAMES)
        if unknown:
            raise ConfigurationError(
                f"Unknown Docker option(s): {', '.join(sorted(unknown))}. Known: {', '.join(self.NAMES)}."
            )
        values = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **values) if values else self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ContainerOptions:
        """Defaults overridden by the ``CODERUNNER_DOCKER_*`` variables."""
        values: dict[str, Any] = {}
        if network := env_text("CODERUNNER_DOCKER_NETWORK", environ):
            values["network"] = network_from_text(network)
        if memory := env_text("CODERUNNER_DOCKER_MEMORY", environ):
            values["memory"] = memory
        for var, name, kind in (
            ("CODERUNNER_DOCKER_CPUS", "cpus", float),
            ("CODERUNNER_DOCKER_PIDS_LIMIT", "pids_limit", int),
        ):
            if text := env_text(var, environ):
                try:
                    values[name] = kind(text)
                except ValueError:
                    raise ConfigurationError(f"{var}={text!r} is not a number.") from None
        if runtime := env_text("CODERUNNER_DOCKER_RUNTIME", environ):
            values["runtime"] = runtime
        if disk := env_text("CODERUNNER_DOCKER_DISK_LIMIT", environ):
            values["disk_limit"] = None if disk.lower() in ("none", "0", "off", "false") else disk
        return cls(**values)


def network_from_text(raw: str) -> str:
    """A ``network`` option from a variable's text: the keywords lower-cased, a network's name as it is."""
    return raw.lower() if raw.lower() in ("none", "default", "host", "0", "1") else raw
