"""The isolation defaults, checked from INSIDE the container, and their per-session overrides."""

from __future__ import annotations

from typing import Any

import pytest

from coderunner import CodeRunner, ConfigurationError
from coderunner.specs import SessionSpec

pytestmark = pytest.mark.docker

PROBE = r"""
import json, os, socket
def read(path):
    try:
        return open(path).read().strip()
    except OSError as exc:
        return f"error: {exc.strerror}"
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
writes = {}
for path in ("/probe", "/usr/probe", "/etc/probe", "/work/probe", "/tmp/probe", os.path.expanduser("~/probe")):
    try:
        open(path, "w").write("x")
        writes[path] = "ok"
    except OSError as exc:
        writes[path] = exc.strerror
print(json.dumps({
    "uid": os.getuid(),
    "cap_eff": status["CapEff"].strip(),
    "cap_prm": status["CapPrm"].strip(),
    "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "interfaces": [name for _, name in socket.if_nameindex()],
    "writes": writes,
    "memory_limit": read("/sys/fs/cgroup/memory/memory.limit_in_bytes") if os.path.exists("/sys/fs/cgroup/memory")
        else read("/sys/fs/cgroup/memory.max"),
    "pids_max": read("/sys/fs/cgroup/pids/pids.max") if os.path.exists("/sys/fs/cgroup/pids")
        else read("/sys/fs/cgroup/pids.max"),
    "cpu_quota": read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") if os.path.exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        else read("/sys/fs/cgroup/cpu.max"),
}))
"""


def probe(runner: CodeRunner, session_id: str) -> dict[str, Any]:
    import json

    result = runner.execute(PROBE, session_id=session_id)
    assert result.status == "ok", result
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_defaults_hold_inside_the_container(docker_runner: CodeRunner, docker_client: Any) -> None:
    info = docker_runner.backend.create_session()
    try:
        seen = probe(docker_runner, info.session_id)
        assert seen["uid"] != 0
        assert seen["cap_eff"] == seen["cap_prm"] == seen["cap_bnd"] == "0000000000000000"
        assert seen["no_new_privs"] == "1"
        assert seen["interfaces"] == ["lo"]
        writes = seen["writes"]
        assert writes["/probe"] == writes["/usr/probe"] == writes["/etc/probe"] == "Read-only file system"
        assert writes["/work/probe"] == writes["/tmp/probe"] == "ok"
        assert writes["/home/sandbox/probe"] == "ok"
        assert int(seen["memory_limit"].split()[0]) == 1024**3
        assert seen["pids_max"] == "256"
        assert seen["cpu_quota"].split()[0] in ("100000", "100000 100000")
        host = docker_client.api.inspect_container(docker_runner.backend.container_id(info.session_id))["HostConfig"]
        assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"] and host["NetworkMode"] == "none"
        assert any(opt.startswith("no-new-privileges") for opt in host["SecurityOpt"])
        assert host["MemorySwap"] == host["Memory"]  # no swap beyond the limit
    finally:
        docker_runner.backend.close_session(info.session_id)


def test_per_session_overrides(docker_runner: CodeRunner, docker_client: Any) -> None:
    info = docker_runner.backend.create_session(
        SessionSpec(options={"memory": "300m", "cpus": 0.5, "pids_limit": 100, "network": True})
    )
    try:
        seen = probe(docker_runner, info.session_id)
        assert int(seen["memory_limit"].split()[0]) == 300 * 1024**2
        assert seen["pids_max"] == "100"
        assert seen["cpu_quota"].split()[0] == "50000"
        host = docker_client.api.inspect_container(docker_runner.backend.container_id(info.session_id))["HostConfig"]
        # network=True is the engine's default network; these engines run without a bridge, so the
        # container still sees only loopback, but it is no longer forced to 'none'.
        assert host["NetworkMode"] != "none"
    finally:
        docker_runner.backend.close_session(info.session_id)


def test_start_session_passes_container_options(docker_runner: CodeRunner) -> None:
    sid = docker_runner.start_session(memory="400m")
    try:
        assert int(probe(docker_runner, sid)["memory_limit"].split()[0]) == 400 * 1024**2
    finally:
        docker_runner.close_session(sid)


def test_explicit_sessions_take_container_options_too(docker_runner: CodeRunner) -> None:
    with docker_runner.session(memory="300m", pids_limit=100) as s:
        seen = probe(docker_runner, s.session_id)
        assert int(seen["memory_limit"].split()[0]) == 300 * 1024**2
        assert seen["pids_max"] == "100"


@pytest.mark.parametrize(
    ("option", "value"),
    [("memory", "lots"), ("memory", "1m"), ("cpus", 0), ("pids_limit", 3), ("network", ""), ("colour", "blue")],
)
def test_bad_options_are_configuration_errors(docker_runner: CodeRunner, option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError):
        docker_runner.backend.create_session(SessionSpec(options={option: value}))


def test_unknown_runtime_is_a_clear_error(docker_runner: CodeRunner) -> None:
    with pytest.raises(ConfigurationError, match="no runtime 'nonesuch'"):
        docker_runner.backend.create_session(SessionSpec(options={"runtime": "nonesuch"}))
