"""Browser settings: explicit argument > ``CODERUNNER_BROWSER_*`` / ``CODERUNNER_CHROMIUM`` variable > default."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from coderunner.browser.policy import EgressPolicy
from coderunner.errors import ConfigurationError

__all__ = ["BROWSER_ENV_VARS", "BrowserSettings"]


@dataclass(frozen=True)
class BrowserSettings:
    """Options of the browser engine. Each field names the variable that feeds it."""

    max_sessions: int = 8
    """Most browser sessions open at once per backend (CODERUNNER_BROWSER_MAX_SESSIONS)."""
    idle_timeout: float | None = 600.0
    """Seconds without an action after which a browser session is closed (CODERUNNER_BROWSER_IDLE_TIMEOUT;
    0 or 'none' = never)."""
    pool_size: int = 1
    """Browser contexts kept open and ready, so a new session starts in milliseconds
    (CODERUNNER_BROWSER_POOL_SIZE; 0 disables the pool)."""
    chromium: str | None = None
    """Path of the Chromium/Chrome executable (CODERUNNER_CHROMIUM). Unset: Playwright's own browser if
    ``playwright install chromium`` was run, else ``chromium`` / ``chromium-browser`` on PATH."""
    allow: tuple[str, ...] = ()
    """Egress allow rules: host globs or CIDRs, comma-separated (CODERUNNER_BROWSER_ALLOW)."""
    deny: tuple[str, ...] = ()
    """Egress deny rules: host globs or CIDRs, comma-separated (CODERUNNER_BROWSER_DENY)."""
    egress_default: Literal["allow", "deny"] = "allow"
    """'deny' turns the allow rules into an allow list (CODERUNNER_BROWSER_EGRESS_DEFAULT)."""
    public_bind: bool = False
    """Refuse loopback and private destinations too; the server sets it when it listens on a
    non-loopback address (CODERUNNER_BROWSER_PUBLIC_BIND)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> BrowserSettings:
        """Build settings from ``overrides`` (non-None values win), then the environment, then defaults.

        Raises:
            ConfigurationError: An unknown option, or a variable with an invalid value.
        """
        env = os.environ if environ is None else environ
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise ConfigurationError(
                f"Unknown browser option(s): {', '.join(sorted(unknown))}. Known: {', '.join(sorted(names))}."
            )
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if overrides.get(f.name) is not None:
                value = overrides[f.name]
                if f.name in ("allow", "deny"):
                    value = tuple(value)
                elif f.name == "idle_timeout" and value == 0:
                    value = None  # 0 means "never", as in the environment variable
                values[f.name] = value
                continue
            raw = env.get(BROWSER_ENV_VARS[f.name], "").strip()
            if raw:
                values[f.name] = _parse(f.name, BROWSER_ENV_VARS[f.name], raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject values that cannot work, naming the option."""
        if self.max_sessions < 1:
            raise ConfigurationError("browser max_sessions must be at least 1.")
        if self.pool_size < 0:
            raise ConfigurationError("browser pool_size cannot be negative.")
        if self.idle_timeout is not None and self.idle_timeout <= 0:
            raise ConfigurationError("browser idle_timeout must be positive (or None for never).")
        self.policy()  # raises on a malformed rule

    def to_env(self) -> dict[str, str]:
        """These settings as ``CODERUNNER_BROWSER_*`` variables, for a browser engine in another process.

        ``chromium`` is left out: a path on this machine means nothing inside a container.
        """
        env: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "chromium":
                continue
            if f.name in ("allow", "deny"):
                text = ",".join(value)
            elif f.name == "idle_timeout":
                text = "none" if value is None else repr(float(value))
            elif isinstance(value, bool):
                text = "1" if value else "0"
            else:
                text = str(value)
            env[BROWSER_ENV_VARS[f.name]] = text
        return env

    def policy(self) -> EgressPolicy:
        """The egress policy these settings describe."""
        return EgressPolicy(self.allow, self.deny, public_bind=self.public_bind, default=self.egress_default)


BROWSER_ENV_VARS: dict[str, str] = {
    "max_sessions": "CODERUNNER_BROWSER_MAX_SESSIONS",
    "idle_timeout": "CODERUNNER_BROWSER_IDLE_TIMEOUT",
    "pool_size": "CODERUNNER_BROWSER_POOL_SIZE",
    "chromium": "CODERUNNER_CHROMIUM",
    "allow": "CODERUNNER_BROWSER_ALLOW",
    "deny": "CODERUNNER_BROWSER_DENY",
    "egress_default": "CODERUNNER_BROWSER_EGRESS_DEFAULT",
    "public_bind": "CODERUNNER_BROWSER_PUBLIC_BIND",
}


def _parse(name: str, var: str, raw: str) -> Any:
    try:
        if name in ("max_sessions", "pool_size"):
            return int(raw)
        if name == "idle_timeout":
            if raw.lower() in ("none", "off"):
                return None
            seconds = float(raw)
            return None if seconds == 0 else seconds
        if name in ("allow", "deny"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if name == "egress_default":
            if raw.lower() not in ("allow", "deny"):
                raise ValueError(raw)
            return raw.lower()
        if name == "public_bind":
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise ConfigurationError(f"{var}={raw!r} is not a valid value for browser {name}.") from None
    return raw
