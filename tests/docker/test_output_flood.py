"""A 500 MB print flood in a 1 GiB container: capped inside the kernel, so nothing is killed for memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coderunner import CodeRunner
from coderunner.engine.output import MAX_SPILL_BYTES
from coderunner.specs import SessionSpec

pytestmark = pytest.mark.docker

LINE = 1_000_000
FLOOD = "pad = 'x' * {pad}\nfor i in range({n}):\n    print(f'{{i:07d}}' + pad)"


@pytest.fixture
def session_id(docker_runner: CodeRunner) -> Iterator[str]:
    info = docker_runner.backend.create_session(SessionSpec(options={"memory": "1g"}))
    try:
        yield info.session_id
    finally:
        docker_runner.backend.close_session(info.session_id)


@pytest.mark.parametrize(
    "code",
    [
        FLOOD.format(pad=LINE - 8, n=500),
        "import sys\nsys.stdout.write('y' * 500_000_000)",
        "import subprocess\nsubprocess.run('yes | head -c 500000000', shell=True)",
    ],
    ids=["print-loop", "one-write", "subprocess"],
)
def test_flood_in_a_1g_container_is_cut_not_killed(docker_runner: CodeRunner, session_id: str, code: str) -> None:
    docker_runner.execute("kept = 1", session_id=session_id)
    result = docker_runner.execute(code, session_id=session_id, timeout=240)
    assert result.status == "ok", result.error
    assert result.state_lost is False
    assert result.truncated is True and result.stdout_file is not None
    assert "characters truncated; full output in" in result.stdout
    assert len(result.stdout) < docker_runner.settings.max_output_chars + 500
    if "pad" in code:  # one huge write holds 500 MB of the user's own string: only the loop is small
        assert result.peak_memory_bytes is not None and result.peak_memory_bytes < 300 * 1024**2
    check = docker_runner.execute(
        f"import os\nf = open({result.stdout_file!r})\nhead = f.read(8)\nf.seek(0, os.SEEK_END)\n"
        f"print(os.path.getsize({result.stdout_file!r}), repr(head))\nprint(kept)",
        session_id=session_id,
    )
    size, head = check.stdout.split("\n")[0].split(" ", 1)
    # The spill file stops at MAX_SPILL_BYTES characters (ASCII here), plus its closing note.
    assert MAX_SPILL_BYTES < int(size) < MAX_SPILL_BYTES + 100
    assert head == repr("0000000x" if "pad" in code else "y" * 8 if "write" in code else "y\ny\ny\ny\n")
    assert check.stdout.endswith("\n1\n")  # the interpreter and its state survived
