"""Without the optional packages, coderunner still imports and each adapter names the extra to install."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
for name in ("langchain_core", "llama_index", "mcp", "mcp_types", "openai", "agents", "pydantic_ai", "deepagents",
             "smolagents", "google"):
    sys.modules[name] = None  # makes any import of them fail, as if not installed

import coderunner, coderunner.tools, coderunner.integrations.openai  # need no extra
from coderunner.errors import MissingDependencyError
from coderunner.integrations.langchain import get_langchain_tools  # importable; fails when used

try:
    get_langchain_tools()
except MissingDependencyError as exc:
    assert "pip install 'coderunner-sandbox[langchain]'" in exc.message, exc.message
else:
    raise SystemExit("get_langchain_tools did not fail")
for module, extra in (
    ("coderunner.integrations.llamaindex", "llamaindex"),
    ("coderunner.server.mcp", "server"),
    ("coderunner.integrations.openai_agents", "openai-agents"),
    ("coderunner.integrations.pydantic_ai", "pydantic-ai"),
    ("coderunner.integrations.deepagents", "deepagents"),
    ("coderunner.integrations.smolagents", "smolagents"),
    ("coderunner.integrations.google_adk", "google-adk"),
):
    try:
        __import__(module)
    except MissingDependencyError as exc:
        assert f"pip install 'coderunner-sandbox[{extra}]'" in exc.message, exc.message
    else:
        raise SystemExit(module + " imported without its extra")
print("ok")
"""


def test_adapters_name_their_extra() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
