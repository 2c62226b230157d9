"""The ToolSpec list and dispatcher: result shaping, caps, images, argument errors; nothing ever raises."""

from __future__ import annotations

import base64
import logging

import pytest

from coderunner import AsyncCodeRunner, CodeRunner, ErrorInfo, ExecutionResult, Output
from coderunner.errors import BackendUnavailableError
from coderunner.testing import FakeBackend, FakeCall
from coderunner.tools import (
    MAX_TOOL_TEXT_CHARS,
    adispatch,
    dispatch,
    format_execution_result,
    get_tool_spec,
    get_tool_specs,
    parse_arguments,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def runner(fake: FakeBackend) -> CodeRunner:
    return CodeRunner(backend=fake)


def test_spec_list_and_lookup() -> None:
    names = [s.name for s in get_tool_specs()]
    assert names == [
        "execute_python_code",
        "execute_bash_command",
        "execute_code",
        "write_file",
        "read_file",
        "list_files",
        "install_packages",
    ]
    assert [s.name for s in get_tool_specs(sessions=True)][-2:] == ["start_session", "close_session"]
    assert get_tool_spec("upload_file").name == "write_file"
    assert get_tool_spec("download_file").name == "read_file"
    with pytest.raises(ValueError, match="Unknown tool"):
        get_tool_specs(names=["nope"])
    for name in ("execute_python_code", "execute_bash_command", "execute_code"):
        description = get_tool_spec(name).description
        assert "persist" in description and "time limit" in description
    python = get_tool_spec("execute_python_code").description
    assert "plt.show()" in python and "time limit" in python


def test_execution_text_is_compact_and_ordered(runner: CodeRunner, fake: FakeBackend) -> None:
    fake.queue(
        ExecutionResult(
            status="error",
            stdout="partial\n",
            stderr="warning: x\n",
            exit_code=1,
            error=ErrorInfo(name="ValueError", value="bad", traceback="\n".join(f"frame {i}" for i in range(60))),
            outputs=[
                Output(type="display_data", data={"image/png": PNG[:20] + "\n" + PNG[20:], "text/plain": "<Figure>"}),
                Output(type="display_data", data={"image/svg+xml": "<svg/>"}),
                Output(type="display_data", data={"text/html": "<b>x</b>"}),
                Output(type="execute_result", data={"text/plain": "41 + 1"}),
            ],
            files_created=["plot.png"],
            state_lost=True,
            warnings=["the session was replaced"],
        )
    )
    result = dispatch(runner, "execute_python_code", {"code": "x"})
    assert result.is_error and result.tool_name == "execute_python_code"
    lines = result.text.splitlines()
    assert lines[0] == "Status: error (exit code 1)."
    assert result.text.index("stdout:\npartial") < result.text.index("stderr:\nwarning: x")
    assert "[image 1: image/png" in result.text and PNG not in result.text
    assert result.images[0].data == PNG and result.images[0].mime_type == "image/png"  # line breaks removed
    assert "[SVG image" in result.text and "[HTML output, 8 characters, not shown]" in result.text
    assert "Result: 41 + 1" in result.text
    assert "Error: ValueError: bad" in result.text
    assert "Traceback (last lines):" in result.text and "frame 59" in result.text and "frame 10\n" not in result.text
    assert "Files created: plot.png" in result.text
    assert "variables and imports from earlier calls are gone" in result.text
    assert "Warning: the session was replaced" in result.text
    assert result.execution is not None


def test_statuses_and_empty_output() -> None:
    assert format_execution_result(ExecutionResult(status="ok")).text == "Done (no output)."
    timeout = format_execution_result(
        ExecutionResult(status="timeout", exit_code=124, error=ErrorInfo(name="Timeout", value="limit 1 s"))
    )
    assert timeout.is_error and timeout.text.startswith("Status: timeout (exit code 124).")
    assert "Error: Timeout: limit 1 s" in timeout.text
    many = [Output(type="display_data", data={"image/jpeg": PNG}) for _ in range(12)]
    capped = format_execution_result(ExecutionResult(status="ok", outputs=many))
    assert len(capped.images) == 10 and "2 more image(s)" in capped.text


def test_runner_truncation_names_its_file() -> None:
    result = ExecutionResult(status="ok", stdout="x" * 500, truncated=True, stdout_file=".coderunner/output/a.stdout")
    text = format_execution_result(result).text
    assert "stdout was truncated" in text and "'.coderunner/output/a.stdout'" in text


def test_tool_cap_saves_the_full_stream_into_the_session(runner: CodeRunner, fake: FakeBackend) -> None:
    big = "".join(f"line {i}\n" for i in range(20_000))
    fake.queue(ExecutionResult(status="ok", stdout=big))
    result = dispatch(runner, "execute_python_code", {"code": "spam()"})
    assert len(result.text) <= MAX_TOOL_TEXT_CHARS
    assert "line 0\n" in result.text and "line 19999" in result.text and "characters omitted" in result.text
    saved = result.text.split("the full text is in the file '")[1].split("'")[0]
    assert saved.startswith(".coderunner/output/tool-") and runner.download_file(saved).decode() == big
    small = dispatch(runner, "execute_python_code", {"code": "x"}, max_chars=500)
    assert len(small.text) <= 500


async def test_tool_cap_saves_on_async_runners_too() -> None:
    async with AsyncCodeRunner(backend="fake", handler=lambda call: "y" * 50_000) as arunner:
        result = await adispatch(arunner, "execute_code", {"code": "x"})
        saved = result.text.split("the full text is in the file '")[1].split("'")[0]
        assert await arunner.download_file(saved) == b"y" * 50_000


def test_failures_become_results(runner: CodeRunner, fake: FakeBackend, caplog: pytest.LogCaptureFixture) -> None:
    def explode(call: FakeCall) -> str:
        raise RuntimeError("engine on fire")

    fake.handler = explode
    with caplog.at_level(logging.ERROR, logger="coderunner.tools"):
        result = dispatch(runner, "execute_code", {"code": "1"})
    assert result.is_error and "Internal error in tool execute_code: RuntimeError: engine on fire" in result.text
    assert "engine on fire" in caplog.text  # logged for the operator

    def unavailable(call: FakeCall) -> str:
        raise BackendUnavailableError("the engine is restarting")

    fake.handler = unavailable
    result = dispatch(runner, "execute_code", {"code": "1"})
    assert result.text == (
        "Error [backend_unavailable]: the engine is restarting. This is temporary; you can retry the call."
    )


def test_files_tools(runner: CodeRunner) -> None:
    assert (
        dispatch(runner, "upload_file", {"path": "d/a.txt", "content": "héllo"}).text == "Wrote 6 bytes to 'd/a.txt'."
    )
    assert dispatch(runner, "download_file", {"path": "d/a.txt"}).text == "héllo"
    runner.write_file("img.png", base64.b64decode(PNG))
    image = dispatch(runner, "read_file", {"path": "img.png"})
    assert image.images and "image/png image" in image.text and PNG not in image.text
    runner.write_file("blob.bin", b"\xff\xfe\x00\x01" * 10)
    assert "binary file of 40 bytes" in dispatch(runner, "read_file", {"path": "blob.bin"}).text
    runner.write_file("big.txt", "z" * 100_000)
    big = dispatch(runner, "read_file", {"path": "big.txt"})
    assert len(big.text) <= MAX_TOOL_TEXT_CHARS and "has 100000 characters" in big.text
    runner.write_file("empty.txt", "")
    assert dispatch(runner, "read_file", {"path": "empty.txt"}).text == "'empty.txt' is empty."
    listing = dispatch(runner, "list_files", {})
    assert "d/a.txt\t6 bytes" in listing.text
    nothing = dispatch(runner, "list_files", {"path": "nothing"})  # like InProcess: a missing folder is an error
    assert nothing.is_error and "No directory 'nothing'" in nothing.text
    missing = dispatch(runner, "read_file", {"path": "nope.txt"})
    assert missing.is_error and missing.text.startswith("Error [file_not_found]")


def test_install_packages(runner: CodeRunner, fake: FakeBackend) -> None:
    ok = dispatch(runner, "install_packages", {"packages": "numpy, pandas"})  # a string is split
    assert ok.text == "Installed with pip: numpy, pandas."
    assert "pip" in fake.calls[-1].code and "'numpy', 'pandas'" in fake.calls[-1].code
    bad = dispatch(runner, "install_packages", {"packages": ["--index-url=http://evil"]})
    assert bad.is_error and "[invalid_request]" in bad.text
    js = dispatch(runner, "install_packages", {"packages": ["left-pad"], "language": "node"})
    assert js.text.startswith("Installed with npm") and fake.calls[-1].language == "bash"


def test_language_aliases_and_nulls(runner: CodeRunner, fake: FakeBackend) -> None:
    dispatch(runner, "execute_code", {"code": "echo", "language": "sh"})
    assert fake.calls[-1].language == "bash"
    dispatch(runner, "execute_python_code", {"code": "1", "language": None, "session_id": None})
    assert fake.calls[-1].language == "python"


def test_parse_arguments() -> None:
    assert parse_arguments(None) == {} and parse_arguments("") == {} and parse_arguments("  ") == {}
    assert parse_arguments(b'{"a": 1}') == {"a": 1}
    assert parse_arguments('"{\\"a\\": 1}"') == {"a": 1}
    for bad, message in [
        ("{", "not valid JSON"),
        ("[1]", "JSON object"),
        ('"text"', "JSON object"),
        (42, "JSON object"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_arguments(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="characters long"):
        parse_arguments(" " * 20_000_001)


def test_dispatch_names_and_specs(runner: CodeRunner) -> None:
    assert "Unknown tool 42" in dispatch(runner, 42, {}).text  # type: ignore[arg-type]
    plain = get_tool_specs()
    refused = dispatch(runner, "execute_code", {"code": "1", "session_id": "s"}, specs=plain)
    assert refused.is_error and "session_id: unexpected argument" in refused.text
    assert "start_session" not in dispatch(runner, "nope", {}, specs=plain).text
    started = dispatch(runner, "start_session", {"language": "js"})
    sid = started.text.split()[2]
    assert runner.is_session_active(sid)
    assert dispatch(runner, "close_session", {"session_id": sid}).text == f"Closed session {sid}."
    assert not runner.is_session_active(sid)
