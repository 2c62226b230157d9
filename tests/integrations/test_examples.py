"""The examples that have no scripted model of their own: the MCP client config and the cloud migration script."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from integration_helpers import EXAMPLES, load_example, serve
from mcp import Client, StdioServerParameters

from coderunner.cli import build_parser
from coderunner.tools import get_tool_specs

HAS_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None
"""The MCP server lists the browser tools when playwright is installed."""

EXPECTED = {
    "totals": "[('north', 150), ('south', 80)]",
    "bash": "42",
    "downloaded": "{'north': 150, 'south': 80}",
    "async": "async done",
    "error_status": "error",
}


def test_migrate_to_cloud_runs_locally() -> None:
    assert load_example("migrate_to_cloud").main(pool_size=0) == EXPECTED


@pytest.mark.skipif(importlib.util.find_spec("coderunner.cloud") is None, reason="coderunner.cloud is not written yet")
def test_migrate_to_cloud_runs_on_the_instavm_protocol() -> None:
    """The same script through ``coderunner.cloud.InstaVM`` against our own InstaVM-protocol server on loopback."""
    pytest.importorskip("fastapi")
    from coderunner.server.app import create_app

    app = create_app(db_path=":memory:", mcp=False)
    with serve(app) as base_url:
        assert load_example("migrate_to_cloud").main(cloud=True, base_url=base_url) == EXPECTED


async def test_mcp_config_starts_a_working_server() -> None:
    config = json.loads((EXAMPLES / "mcp_config.json").read_text())
    entry = config["mcpServers"]["coderunner"]
    assert entry["command"] == "coderunner" and entry["args"][0] == "mcp"
    if "mcp" not in build_parser()._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
        pytest.skip("the `coderunner mcp` command is not registered yet")
    command = shutil.which("coderunner", path=str(Path(sys.executable).parent)) or shutil.which("coderunner")
    assert command, "the coderunner console script is not installed"
    env = {**os.environ, **entry["env"], "CODERUNNER_POOL_SIZE": "0"}
    async with Client(StdioServerParameters(command=command, args=entry["args"], env=env)) as client:
        listed = await client.list_tools()
        assert [t.name for t in listed.tools] == [s.name for s in get_tool_specs(sessions=True, browser=HAS_PLAYWRIGHT)]
        result = await client.call_tool("execute_bash_command", {"command": "echo from-config"})
        assert not result.is_error and "from-config" in result.content[0].text
