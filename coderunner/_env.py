"""Settings from the environment: one rule (option > ``CODERUNNER_*`` variable > default), one set of parsers."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from coderunner.errors import ConfigurationError

__all__ = [
    "Parser",
    "env_text",
    "parse_flag",
    "parse_list",
    "parse_optional_seconds",
    "settings_values",
]

Parser = Callable[[str], Any]
"""Turns a variable's (stripped, non-empty) text into a value; raises ValueError when it cannot."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_text(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's text without surrounding blanks, or None when it is unset or blank."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    return raw or None


def parse_flag(raw: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); anything else is a ValueError."""
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(raw)


def parse_optional_seconds(raw: str) -> float | None:
    """Seconds, where ``none``, ``off`` and ``0`` mean no limit (None)."""
    if raw.lower() in ("none", "off"):
        return None
    value = float(raw)
    return None if value == 0 else value


def parse_list(raw: str) -> tuple[str, ...]:
    """Comma-separated items, blanks dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def settings_values(
    cls: type[Any],
    variables: Mapping[str, tuple[str, Parser]],
    environ: Mapping[str, str] | None,
    overrides: Mapping[str, Any],
    *,
    what: str = "",
) -> dict[str, Any]:
    """The constructor arguments of the settings dataclass ``cls``: non-None overrides, else the variables.

    Args:
        cls: A dataclass whose fields are the options.
        variables: For each field, its environment variable and the parser of its text.
        environ: The environment (default: ``os.environ``).
        overrides: Explicit options; None means "not given".
        what: Qualifies the options in messages (``"browser "`` gives "Unknown browser option(s)").

    Raises:
        ConfigurationError: An override names no field, or a variable's text does not parse.
    """
    env = os.environ if environ is None else environ
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise ConfigurationError(
            f"Unknown {what}option(s): {', '.join(sorted(unknown))}. Known options: {', '.join(sorted(names))}."
        )
    values: dict[str, Any] = {}
    for name in sorted(names):
        if overrides.get(name) is not None:
            values[name] = overrides[name]
            continue
        var, parse = variables[name]
        raw = env_text(var, env)
        if raw is None:
            continue
        try:
            values[name] = parse(raw)
        except ValueError:
            raise ConfigurationError(f"{var}={raw!r} is not a valid value for {what}{name}.") from None
    return values
