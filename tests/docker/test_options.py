"""The Docker backend's pure parts: option parsing, death messages, the Dockerfile it builds from (no engine)."""

from __future__ import annotations

import pytest

from coderunner import ConfigurationError
from coderunner.backends.docker import ContainerOptions, ImageSpec, death_message, find_dockerfile, parse_memory

pytestmark = pytest.mark.docker


@pytest.mark.parametrize(
    ("text", "size"),
    [("512m", 512 * 1024**2), ("1g", 1024**3), ("1.5GiB", int(1.5 * 1024**3)), ("64MB", 64 * 1024**2), (2**30, 2**30)],
)
def test_parse_memory(text: str | int, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("bad", ["lots", "1m", "-1g", True, ""])
def test_parse_memory_refuses_nonsense(bad: object) -> None:
    with pytest.raises(ConfigurationError):
        parse_memory(bad)  # type: ignore[arg-type]


def test_defaults_are_locked_down() -> None:
    options = ContainerOptions()
    assert options.network_mode == "none"
    assert options.read_only is True
    assert parse_memory(options.memory) == 1024**3
    assert options.pids_limit == 256


def test_network_values() -> None:
    assert ContainerOptions(network=True).network_mode is None  # the engine's default network
    assert ContainerOptions(network="host").network_mode == "host"
    assert ContainerOptions(network="none").network_mode == "none"
    assert ContainerOptions(network="my-net").network_mode == "my-net"


def test_environment_and_overrides() -> None:
    env = {
        "CODERUNNER_DOCKER_MEMORY": "2g",
        "CODERUNNER_DOCKER_CPUS": "1.5",
        "CODERUNNER_DOCKER_PIDS_LIMIT": "512",
        "CODERUNNER_DOCKER_NETWORK": "default",
        "CODERUNNER_DOCKER_RUNTIME": "runsc",
    }
    options = ContainerOptions.from_env(env)
    assert (options.memory, options.cpus, options.pids_limit, options.runtime) == ("2g", 1.5, 512, "runsc")
    assert options.network_mode is None
    narrower = options.with_overrides({"memory": "256m", "cpus": None})
    assert (narrower.memory, narrower.cpus) == ("256m", 1.5)
    with pytest.raises(ConfigurationError, match="Unknown Docker option"):
        options.with_overrides({"colour": "blue"})
    with pytest.raises(ConfigurationError, match="CODERUNNER_DOCKER_CPUS"):
        ContainerOptions.from_env({"CODERUNNER_DOCKER_CPUS": "many"})


def test_gvisor_needs_enough_pids() -> None:
    with pytest.raises(ConfigurationError, match="64"):
        ContainerOptions(runtime="runsc", pids_limit=32)


def test_death_messages_say_what_happened() -> None:
    oom, code = death_message({"OOMKilled": True, "ExitCode": 137}, "1g")
    assert "memory limit (1g" in oom and code == 137
    stopped, code = death_message({"Running": False, "ExitCode": 1}, "1g")
    assert "exit status 1" in stopped and code == 1
    assert "was removed" in death_message({}, "1g")[0]
    for message in (oom, stopped):
        assert "variables and imports were lost" in message and "files in the session directory remain" in message


def test_the_dockerfile_is_found_and_builds_offline() -> None:
    text = find_dockerfile().read_text()
    assert "ARG BASE=python:3.12-slim" in text
    assert "--no-index" in text  # never reaches an index from inside the build
    assert "USER ${UID}" in text


def test_image_extras_follow_the_spec_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ImageSpec(base="b", datascience=True, browser=True).extras == "server,datascience,browser"
    assert ImageSpec(base="b", datascience=False, browser=False).extras == "server"

    class NoEngine:  # resolved() only asks the engine for the offline base when no base is given
        images = None

    monkeypatch.setenv("CODERUNNER_DOCKER_BROWSER", "0")
    monkeypatch.setenv("CODERUNNER_DOCKER_DATASCIENCE", "1")
    assert ImageSpec(base="b").resolved(NoEngine()).extras == "server,datascience"
    monkeypatch.delenv("CODERUNNER_DOCKER_BROWSER")
    assert ImageSpec(base="b").resolved(NoEngine()).browser is True  # on by default
    assert ImageSpec(base="b", browser=False).resolved(NoEngine()).browser is False  # the argument wins


def test_the_dockerfile_installs_the_browser_only_when_asked() -> None:
    text = find_dockerfile().read_text()
    assert "*,browser,*" in text and "chromium" in text and "libatomic1" in text


def test_the_dockerfile_ships_in_the_package() -> None:
    from pathlib import Path

    import coderunner.backends

    packaged = Path(coderunner.backends.__file__).with_name("sandbox.Dockerfile")
    assert find_dockerfile() == packaged
    assert '"backends/*.Dockerfile"' in (Path(__file__).parents[2] / "pyproject.toml").read_text()  # package data
    assert (Path(__file__).parents[2] / "docker" / "Dockerfile").resolve() == packaged.resolve()
