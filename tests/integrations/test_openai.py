"""OpenAI integration: the real ``openai`` client against a scripted OpenAI-compatible endpoint on loopback."""

from __future__ import annotations

import json
from typing import Any

import pytest
from integration_helpers import load_example
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageFunctionToolCall
from openai.types.responses import ResponseFunctionToolCall
from scripted_openai import ScriptedOpenAI, calls, text, tool_outputs

from coderunner import AsyncCodeRunner, CodeRunner
from coderunner.integrations.openai import (
    aexecute_tool,
    execute_tool,
    get_tools,
    run_tool_calls,
    strict_schema,
    tool_result_message,
)
from coderunner.testing import FakeBackend
from coderunner.tools import get_tool_specs

example = load_example("openai_tool_loop")


def _quote_last_tool_output(api: str, body: dict[str, Any]) -> Any:
    return text(f"The tool said: {tool_outputs(api, body)[-1]}")


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_example_loop_runs_tools_and_sends_real_results(api: str, env_runner: CodeRunner) -> None:
    steps = [
        calls(("execute_python_code", {"code": "x = 6 * 7"})),
        calls(("execute_python_code", {"code": "print(x)"})),  # state persists between calls
        _quote_last_tool_output,
    ]
    with ScriptedOpenAI(steps) as server:
        client = OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        answer = example.main(client, model="scripted", api=api, runner=env_runner)

    assert answer == "The tool said: stdout:\n42"
    assert [a for a, _ in server.requests] == [api] * 3
    first_body = server.requests[0][1]
    sent_tools = [t["function"]["name"] if api == "chat" else t["name"] for t in first_body["tools"]]
    assert sent_tools == [s.name for s in get_tool_specs()]
    assert tool_outputs(api, server.requests[2][1]) == ["Done (no output).", "stdout:\n42"]


def test_bad_model_output_never_breaks_the_loop(runner: CodeRunner) -> None:
    bad = [
        ("execute_python_code", "{not json"),
        ("no_such_tool", {"code": "1"}),
        ("execute_python_code", {"code": 123}),
        ("execute_bash_command", {}),
        ("execute_code", {"code": "print(1)", "language": "cobol"}),
        ("execute_python_code", {"code": "#" * 10_000_001}),  # over the runner's code size limit
        ("execute_python_code", '"{\\"code\\": \\"print(7 * 6)\\"}"'),  # double-encoded JSON is accepted
        ("execute_python_code", "[1, 2]"),
    ]
    with ScriptedOpenAI([calls(*bad), text("recovered")]) as server:
        client = OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        answer = example.main(client, model="scripted", api="chat", runner=runner)

    assert answer == "recovered"
    outputs = tool_outputs("chat", server.requests[1][1])
    assert len(outputs) == len(bad)
    assert "not valid JSON" in outputs[0]
    assert "Unknown tool 'no_such_tool'" in outputs[1] and "execute_python_code" in outputs[1]
    assert "code: Input should be a valid string" in outputs[2]
    assert "command: Field required" in outputs[3]
    assert "language: Input should be 'python', 'bash' or 'javascript'" in outputs[4]
    assert "[invalid_request]" in outputs[5] and "limit" in outputs[5]
    assert outputs[6] == "stdout:\n42"
    assert "must be a JSON object" in outputs[7]


def test_chat_images_go_in_a_user_message_after_the_tool_messages(runner: CodeRunner) -> None:
    plot = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"
    steps = [
        calls(("execute_python_code", {"code": plot}), ("execute_python_code", {"code": "print('ok')"})),
        text("done"),
    ]
    with ScriptedOpenAI(steps) as server:
        client = OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        assert example.main(client, model="scripted", runner=runner, images=True) == "done"

    messages = server.requests[1][1]["messages"]
    roles = [m["role"] for m in messages]
    assert roles[-3:] == ["tool", "tool", "user"]
    assert "[image 1: image/png" in messages[-3]["content"]
    parts = messages[-1]["content"]
    assert parts[0]["type"] == "text"
    assert parts[1]["type"] == "image_url" and parts[1]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")


def test_responses_images_go_in_the_function_call_output(runner: CodeRunner) -> None:
    plot = "import matplotlib.pyplot as plt\nplt.plot([3, 1])\nplt.show()"
    with ScriptedOpenAI([calls(("execute_python_code", {"code": plot})), text("seen")]) as server:
        client = OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        assert example.main(client, model="scripted", api="responses", runner=runner, images=True) == "seen"

    (output,) = tool_outputs("responses", server.requests[1][1])
    assert output[0]["type"] == "input_text" and "[image 1" in output[0]["text"]
    assert output[1]["type"] == "input_image" and output[1]["image_url"].startswith("data:image/png;base64,")


def test_get_tools_formats() -> None:
    chat = get_tools("chat")
    responses = get_tools("responses")
    assert [t["function"]["name"] for t in chat] == [t["name"] for t in responses]
    assert {"execute_python_code", "execute_bash_command", "execute_code"} <= {t["name"] for t in responses}
    assert all(t["type"] == "function" and t["strict"] is False for t in responses)
    assert "strict" not in chat[0]["function"]
    with_sessions = {t["name"] for t in get_tools("responses", sessions=True)}
    assert {"start_session", "close_session"} <= with_sessions
    with pytest.raises(ValueError, match="api must be"):
        get_tools("completions")  # type: ignore[arg-type]


def test_strict_mode_rewrites_optionals_as_nullable() -> None:
    (tool,) = get_tools("chat", strict=True, names=["execute_python_code"])
    params = tool["function"]["parameters"]
    assert tool["function"]["strict"] is True
    assert params["additionalProperties"] is False
    assert params["required"] == ["code", "language"]
    assert params["properties"]["language"]["type"] == ["string", "null"]
    assert None in params["properties"]["language"]["enum"]
    (listing,) = get_tools("responses", strict=True, names=["list_files"])
    path = listing["parameters"]["properties"]["path"]
    assert "default" not in path and 'Default: "."' in path["description"]
    # Nested objects and arrays are handled too.
    nested = strict_schema(
        {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "object", "properties": {"b": {}}}}}}
    )
    assert nested["properties"]["a"]["items"]["additionalProperties"] is False
    assert nested["properties"]["a"]["items"]["properties"]["b"] == {"anyOf": [{}, {"type": "null"}]}


def test_strict_mode_nulls_mean_omitted(runner: CodeRunner) -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "execute_python_code", "arguments": ""}
    call["arguments"] = json.dumps({"code": "print('strict')", "language": None})
    result = execute_tool(runner, call)
    assert not result.is_error and result.text == "stdout:\nstrict"


def test_tool_call_shapes_and_result_messages() -> None:
    runner = CodeRunner(backend=FakeBackend(lambda call: "hi\n"))
    sdk_chat = ChatCompletionMessageFunctionToolCall(
        id="call_1", type="function", function={"name": "execute_python_code", "arguments": '{"code": "x"}'}
    )
    sdk_resp = ResponseFunctionToolCall(
        type="function_call", call_id="call_2", name="execute_bash_command", arguments='{"command": "ls"}'
    )
    chat_dict = {"id": "call_3", "type": "function", "function": {"name": "execute_code", "arguments": {"code": "1"}}}
    for call in (sdk_chat, sdk_resp, chat_dict):
        assert execute_tool(runner, call).text == "stdout:\nhi"

    result = execute_tool(runner, sdk_chat)
    assert tool_result_message(sdk_chat, result) == {"role": "tool", "tool_call_id": "call_1", "content": "stdout:\nhi"}
    assert tool_result_message(sdk_resp, result) == {
        "type": "function_call_output",
        "call_id": "call_2",
        "output": "stdout:\nhi",
    }
    # Malformed tool-call objects are errors, not exceptions.
    assert execute_tool(runner, {"id": "x"}).is_error
    assert execute_tool(runner, object()).is_error
    # Responses output items that are not function calls are skipped by run_tool_calls.
    message_item = {"type": "message", "role": "assistant", "content": []}
    assert run_tool_calls(runner, [message_item, sdk_resp]) == [tool_result_message(sdk_resp, result)]
    runner.close()


async def test_async_twins() -> None:
    async with AsyncCodeRunner(backend="fake", handler=lambda call: "async\n") as arunner:
        call = {
            "id": "c",
            "type": "function",
            "function": {"name": "execute_python_code", "arguments": '{"code": "1"}'},
        }
        assert (await aexecute_tool(arunner, call)).text == "stdout:\nasync"
    sync_runner = CodeRunner(backend="fake", handler=lambda call: "thread\n")
    assert (await aexecute_tool(sync_runner, call)).text == "stdout:\nthread"
    sync_runner.close()


@pytest.mark.usefixtures("fresh_default_runner")
def test_no_runner_builds_one_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODERUNNER_BACKEND", "fake")
    call = {"id": "c", "type": "function", "function": {"name": "execute_python_code", "arguments": '{"code": "1"}'}}
    assert not execute_tool(None, call).is_error
    import coderunner.tools

    assert coderunner.tools.default_runner().backend.name == "fake"
