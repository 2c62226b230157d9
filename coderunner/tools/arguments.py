"""Tool arguments: one pydantic model per tool (its JSON schema is THE schema every adapter exports) and parsing.

A model's raw arguments go through :func:`parse_arguments` (JSON text -> dict) and then the tool's
model (dict -> validated, frozen arguments). Both are lenient where models are predictably sloppy
(``null`` for an omitted argument, ``"py"`` for python, ``"numpy pandas"`` for a list, a
double-encoded JSON string) and strict elsewhere: an unknown argument is refused by name.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_validator

from coderunner import _core
from coderunner.errors import CodeRunnerError

__all__ = [
    "MAX_ARGUMENT_CHARS",
    "BrowserClickArgs",
    "BrowserCreateSessionArgs",
    "BrowserExtractContentArgs",
    "BrowserFillArgs",
    "BrowserNavigateArgs",
    "BrowserScreenshotArgs",
    "BrowserTypeArgs",
    "CloseSessionArgs",
    "ExecuteBashCommandArgs",
    "ExecuteCodeArgs",
    "ExecutePythonCodeArgs",
    "InstallPackagesArgs",
    "Language",
    "ListFilesArgs",
    "NavigateAndGetTextArgs",
    "PackageLanguage",
    "ReadFileArgs",
    "StartSessionArgs",
    "ToolArgs",
    "WriteFileArgs",
    "parse_arguments",
    "with_session_id",
]

MAX_ARGUMENT_CHARS = 20_000_000
"""Raw tool-call arguments longer than this are refused before JSON parsing."""


def _clean_schema(schema: dict[str, Any], cls: type[Any] | None = None) -> None:
    """Make a model's JSON schema the canonical tool schema (called by pydantic, mutates in place).

    Titles are noise to a model, and the class docstring is not the tool description.
    ``X | None = None`` becomes plain ``X``: omitting an argument is how a model says "none",
    and a bare type is what every provider handles (OpenAI strict mode adds the null back).
    """
    schema.pop("title", None)
    schema.pop("description", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
        any_of = prop.get("anyOf")
        if isinstance(any_of, list) and prop.get("default", ...) is None:
            non_null = [s for s in any_of if s != {"type": "null"}]
            if len(non_null) == 1:
                del prop["anyOf"]
                del prop["default"]
                prop.update(non_null[0])


def _drop_nulls(data: Any) -> Any:
    # OpenAI strict mode sends null for every optional argument the model leaves out.
    if isinstance(data, Mapping):
        return {k: v for k, v in data.items() if v is not None}
    return data


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown arguments are refused (so typos get a clear message)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_clean_schema)

    @model_validator(mode="before")
    @classmethod
    def _nulls_mean_omitted(cls, data: Any) -> Any:
        return _drop_nulls(data)


def _normalize_language_value(value: Any) -> Any:
    # Accept aliases a model may produce ("py", "sh", "node"); the schema still lists canonical names.
    if isinstance(value, str):
        try:
            return _core.normalize_language(value)
        except CodeRunnerError:
            return value
    return value


def _split_packages(value: Any) -> Any:
    # Models sometimes send "numpy pandas" or "numpy,pandas" instead of a list.
    if isinstance(value, str):
        return [p for p in value.replace(",", " ").split() if p]
    return value


Language = Annotated[Literal["python", "bash", "javascript"], BeforeValidator(_normalize_language_value)]
"""A language a tool runs code in (aliases such as ``"py"`` are accepted)."""
PackageLanguage = Annotated[Literal["python", "javascript"], BeforeValidator(_normalize_language_value)]
"""A language packages can be installed for (pip or npm)."""

_LANGUAGE_DESCRIPTION = "python, bash or javascript."

# The class docstrings below are for readers only: _clean_schema drops them from the schema.


class ExecutePythonCodeArgs(ToolArgs):
    """Arguments of ``execute_python_code``."""

    code: str = Field(description="Python source code to run; may span many lines.")
    language: Language | None = Field(
        default=None,
        description="Leave unset to run Python. Set 'bash' or 'javascript' only to run that language instead.",
    )


class ExecuteBashCommandArgs(ToolArgs):
    """Arguments of ``execute_bash_command``."""

    command: str = Field(description="The bash command or script to run.")


class ExecuteCodeArgs(ToolArgs):
    """Arguments of ``execute_code``."""

    code: str = Field(description="Source code to run; may span many lines.")
    language: Language = Field(default="python", description=f"Language of the code: {_LANGUAGE_DESCRIPTION}")


class WriteFileArgs(ToolArgs):
    """Arguments of ``write_file``."""

    path: str = Field(description="File path relative to the session's working directory, e.g. 'data/input.csv'.")
    content: str = Field(description="The complete text to write (UTF-8). An existing file is overwritten.")


class ReadFileArgs(ToolArgs):
    """Arguments of ``read_file``."""

    path: str = Field(description="File path relative to the session's working directory.")


class ListFilesArgs(ToolArgs):
    """Arguments of ``list_files``."""

    path: str = Field(default=".", description="Directory to list, relative to the working directory.")


class InstallPackagesArgs(ToolArgs):
    """Arguments of ``install_packages``."""

    packages: Annotated[list[str], BeforeValidator(_split_packages)] = Field(
        description="Package names or requirement specifiers, e.g. ['pandas', 'scikit-learn==1.5.0']."
    )
    language: PackageLanguage = Field(
        default="python", description="'python' installs with pip, 'javascript' with npm."
    )


class StartSessionArgs(ToolArgs):
    """Arguments of ``start_session``."""

    language: Language = Field(
        default="python", description=f"Default language of the session: {_LANGUAGE_DESCRIPTION}"
    )


class CloseSessionArgs(ToolArgs):
    """Arguments of ``close_session``."""

    session_id: str = Field(description="Id of the session to close, as returned by start_session.")


_BROWSER_SESSION_DESCRIPTION = (
    "Browser session to act in (an id from browser_create_session). Leave unset to use the default browser "
    "session, which keeps its page between calls."
)


class BrowserCreateSessionArgs(ToolArgs):
    """Arguments of ``browser_create_session``."""

    viewport_width: int = Field(default=1280, ge=100, le=4000, description="Page width in CSS pixels.")
    viewport_height: int = Field(default=800, ge=100, le=4000, description="Page height in CSS pixels.")


class BrowserNavigateArgs(ToolArgs):
    """Arguments of ``browser_navigate``."""

    url: str = Field(description="The URL to open, e.g. 'https://example.com/page'.")
    session_id: str | None = Field(default=None, description=_BROWSER_SESSION_DESCRIPTION)


class BrowserClickArgs(ToolArgs):
    """Arguments of ``browser_click``."""

    selector: str = Field(description="CSS selector of the element to click, e.g. '#submit' or 'a.next'.")
    session_id: str | None = Field(default=None, description=_BROWSER_SESSION_DESCRIPTION)


class BrowserFillArgs(ToolArgs):
    """Arguments of ``browser_fill``."""

    selector: str = Field(description="CSS selector of the input, textarea or select to fill, e.g. '#email'.")
    value: str = Field(description="The value to put in the field (replaces what it held).")
    session_id: str | None = Field(default=None, description=_BROWSER_SESSION_DESCRIPTION)


class BrowserTypeArgs(ToolArgs):
    """Arguments of ``browser_type``."""

    selector: str = Field(description="CSS selector of the element to type into.")
    text: str = Field(description="The text to type, key by key (fires key events, unlike browser_fill).")
    session_id: str | None = Field(default=None, description=_BROWSER_SESSION_DESCRIPTION)


class BrowserScreenshotArgs(ToolArgs):
    """Arguments of ``browser_screenshot``."""

    full_page: bool = Field(default=False, description="Capture the whole page instead of only the visible part.")
    session_id: str | None = Field(default=None, description=_BROWSER_SESSION_DESCRIPTION)


class BrowserExtractContentArgs(ToolArgs):
    """Arguments of ``browser_extract_content``."""

    url: str | None = Field(default=None, description="Open this URL first. Leave unset to read the current page.")
    session_id: str | None = Field(default=None, description=_BROWSER_SESSION_DESCRIPTION)


class NavigateAndGetTextArgs(ToolArgs):
    """Arguments of ``navigate_and_get_all_visible_text``."""

    url: str = Field(description="The URL of the page to read.")


_SESSION_ID_DESCRIPTION = "Run in this session (an id from start_session). Leave unset to use the default session."

_session_variants: dict[type[ToolArgs], type[ToolArgs]] = {}
_session_variants_lock = threading.Lock()


def with_session_id(model: type[ToolArgs]) -> type[ToolArgs]:
    """Return ``model`` extended with an optional ``session_id`` argument (built once per model)."""
    with _session_variants_lock:
        variant = _session_variants.get(model)
        if variant is None:
            variant = create_model(
                model.__name__.replace("Args", "SessionArgs"),
                __base__=model,
                __module__=__name__,
                session_id=(str | None, Field(default=None, description=_SESSION_ID_DESCRIPTION)),
            )
            _session_variants[model] = variant
        return variant


def parse_arguments(arguments: Mapping[str, Any] | str | bytes | None) -> dict[str, Any]:
    """Turn a model's raw tool arguments (a JSON string or a mapping) into a dict.

    Empty input means no arguments. A JSON string that itself contains a JSON object (a
    double-encoded argument string, which some models emit) is decoded once more.

    Raises:
        ValueError: The arguments are not a JSON object; the message says what was wrong.
    """
    if arguments is None:
        return {}
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if isinstance(arguments, (bytes, bytearray)):
        arguments = bytes(arguments).decode("utf-8", errors="replace")
    if not isinstance(arguments, str):
        raise ValueError(f"arguments must be a JSON object, not {type(arguments).__name__}.")
    if len(arguments) > MAX_ARGUMENT_CHARS:
        raise ValueError(
            f"the arguments are {len(arguments)} characters long; the limit is {MAX_ARGUMENT_CHARS}. "
            "Write large data to a file in smaller pieces."
        )
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"the arguments are not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
            "Send a JSON object, with newlines and quotes inside strings escaped."
        ) from None
    if isinstance(value, str) and value.strip().startswith("{"):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError(f"the arguments must be a JSON object, not a JSON {type(value).__name__}.")
    return value
