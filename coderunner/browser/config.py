"""Browser settings: explicit argument > ``CODERUNNER_BROWSER_*`` / ``CODERUNNER_CHROMIUM`` variable > default."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from coderunner._env import Parser, parse_flag, parse_list, parse_optional_seconds, settings_values
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
        given = dict(overrides)
        for name in ("allow", "deny"):
            if given.get(name) is not None:
                given[name] = tuple(given[name])
        values = settings_values(cls, _VARIABLES, environ, given, what="browser ")
        if given.get("idle_timeout") == 0:
            values["idle_timeout"] = None  # 0 means "never", as in the environment variable
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


def _egress_default(raw: str) -> str:
    if raw.lower() not in ("allow", "deny"):
        raise ValueError(raw)
    return raw.lower()


_PARSERS: dict[str, Parser] = {
    "max_sessions": int,
    "pool_size": int,
    "idle_timeout": parse_optional_seconds,
    "allow": parse_list,
    "deny": parse_list,
    "egress_default": _egress_default,
    "public_bind": parse_flag,
}
_VARIABLES = {name: (var, _PARSERS.get(name, str)) for name, var in BROWSER_ENV_VARS.items()}
