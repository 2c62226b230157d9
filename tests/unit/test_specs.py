"""SessionSpec and ExecRequest: checked once when made, frozen, and the same after a trip over the wire."""

from __future__ import annotations

import dataclasses
import json

import pytest

from coderunner import CodeRunner, ConfigurationError, ExecRequest, InvalidRequestError, SessionSpec
from coderunner.testing import FakeBackend


def test_a_spec_normalises_and_freezes_what_it_is_given() -> None:
    env = {"A": "1"}
    spec = SessionSpec("py", env=env, metadata={"n": 1}, lifetime=60)  # type: ignore[dict-item]
    env["A"] = "changed"  # the caller's dict is copied, not kept
    assert (spec.language, dict(spec.env), dict(spec.metadata), spec.lifetime) == (
        "python",
        {"A": "1"},
        {"n": "1"},
        60.0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.language = "bash"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.env["B"] = "2"  # type: ignore[index]
    assert spec.replace(language="sh").language == "bash"


@pytest.mark.parametrize(
    ("fields", "error", "words"),
    [
        ({"language": "cobol"}, ConfigurationError, "Unsupported language"),
        ({"lifetime": 0}, InvalidRequestError, "lifetime must be more than 0"),
        ({"idle_timeout": float("nan")}, InvalidRequestError, "idle_timeout must be more than 0"),
        ({"lifetime": 1e12}, InvalidRequestError, "30 days"),
        ({"env": {"A=B": "x"}}, InvalidRequestError, "Invalid environment variable name"),
        ({"env": {"A": "x\x00"}}, InvalidRequestError, "without NUL"),
        ({"working_dir": " "}, InvalidRequestError, "working_dir must be a directory path"),
    ],
)
def test_a_bad_spec_is_refused_when_made_with_the_rule(fields: dict[str, object], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        SessionSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("",), "code is empty"),
        ((" \n",), "code is empty"),
        ((b"print(1)",), "code must be a string"),
        (("x", None, 0), "timeout must be between 0"),
        (("x", None, True), "timeout must be a number"),
        (("x", None, 1e9), "timeout must be between 0"),
    ],
)
def test_a_bad_exec_request_is_refused_when_made(args: tuple[object, ...], words: str) -> None:
    with pytest.raises(InvalidRequestError, match=words):
        ExecRequest(*args)  # type: ignore[arg-type]


def test_an_exec_request_defers_language_and_timeout_to_the_session_and_backend() -> None:
    request = ExecRequest("echo hi")
    assert request.language_or("bash") == "bash" and request.timeout_or(30.0) == 30.0
    explicit = ExecRequest("console.log(1)", "js", 5)
    assert explicit.language_or("python") == "javascript" and explicit.timeout_or(30.0) == 5.0


def test_both_survive_the_wire_and_the_host_side_stays_home() -> None:
    spec = SessionSpec("bash", env={"K": "v"}, working_dir="/host/dir", metadata={"m": "x"}, options={"cpus": 2})
    wire = json.loads(json.dumps(spec.to_wire()))
    assert "working_dir" not in wire and "options" not in wire  # about the host that holds the session
    back = SessionSpec.from_wire(wire, working_dir="/work")
    assert (back.language, dict(back.env), dict(back.metadata), back.working_dir) == (
        "bash",
        {"K": "v"},
        {"m": "x"},
        "/work",
    )
    request = ExecRequest("print(1)", "python", 3)
    assert ExecRequest.from_wire(json.loads(json.dumps(request.to_wire()))) == request
    with pytest.raises(InvalidRequestError, match="code, language and timeout"):
        ExecRequest.from_wire({"code": "x", "shell": True})
    with pytest.raises(InvalidRequestError, match="only the fields"):
        SessionSpec.from_wire({"language": "python", "working_dir": "/etc"})


def test_options_a_backend_does_not_take_are_refused_naming_what_it_takes() -> None:
    spec = SessionSpec(options={"cpus": 2})
    with pytest.raises(ConfigurationError) as caught:
        spec.check_options("inprocess")
    assert "no session option cpus" in caught.value.message and "idle_timeout" in caught.value.message
    spec.check_options("docker", ("cpus", "memory"))  # known there: no error
    fake = FakeBackend()
    with pytest.raises(ConfigurationError, match="no session option cpus"):
        fake.create_session(spec)
    assert fake.list_sessions() == []


def test_the_client_builds_the_request_once_and_the_backend_gets_it_as_made() -> None:
    fake = FakeBackend()
    with CodeRunner(backend=fake, timeout=7) as runner:
        runner.execute("print(1)", "py")
        runner.execute("echo hi", "bash", timeout=2)
        with pytest.raises(InvalidRequestError, match="code is empty"):
            runner.execute("   ")
    assert [(c.code, c.language, c.timeout) for c in fake.calls] == [
        ("print(1)", "python", 7.0),
        ("echo hi", "bash", 2.0),
    ]
