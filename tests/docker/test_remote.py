"""A remote engine: DOCKER_HOST=tcp://..., with the TCP transport to the in-container server.

Runs against a second dockerd listening on a loopback port (`scripts/docker-engine.sh start-tcp 23750`,
then CODERUNNER_TEST_REMOTE_DOCKER=tcp://127.0.0.1:23750). That engine shares nothing with the first one
but the kernel: no image, no bind-mountable directory of ours; it gets the images by `docker save | load`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from coderunner import CodeRunner

pytestmark = pytest.mark.docker

REMOTE = os.environ.get("CODERUNNER_TEST_REMOTE_DOCKER", "")


@pytest.fixture(scope="module")
def remote_client(docker_client: Any) -> Iterator[Any]:
    if not REMOTE:
        pytest.skip(
            "no second engine: run 'scripts/docker-engine.sh start-tcp 23750' and set "
            "CODERUNNER_TEST_REMOTE_DOCKER=tcp://127.0.0.1:23750"
        )
    from coderunner.backends.docker import connect
    from coderunner.errors import BackendUnavailableError

    try:
        client = connect(REMOTE)
    except BackendUnavailableError as exc:
        pytest.skip(f"CODERUNNER_TEST_REMOTE_DOCKER={REMOTE} does not answer: {exc.message}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def remote_image(docker_client: Any, remote_client: Any, sandbox_image: str) -> str:
    """Copy the base and the sandbox image to the remote engine (no registry in between)."""
    from coderunner.backends.docker import ImageSpec

    base = ImageSpec().resolved(docker_client).base
    for name in (base, sandbox_image):
        try:
            remote_client.images.get(name)
        except Exception:  # docker.errors.ImageNotFound: copy it
            remote_client.api.load_image(docker_client.api.get_image(name))
    return sandbox_image


def test_sessions_on_a_remote_engine(remote_client: Any, remote_image: str, docker_client: Any) -> None:
    from coderunner.backends.docker import LABEL_RUNNER

    with CodeRunner(backend="docker", base_url=REMOTE, pool_size=0) as runner:
        fleet = runner.backend._fleet  # type: ignore[attr-defined]
        assert fleet.transport == "tcp" and fleet.image == remote_image
        runner.execute("x = 41")
        assert runner.execute("print(x + 1)").stdout == "42\n"
        assert runner.execute("echo $((6 * 7)); id -u", "bash").stdout == "42\n1000\n"
        runner.write_file("data/in.txt", "remote")
        assert runner.download_file("data/in.txt") == b"remote"
        assert [f.path for f in runner.list_files("data")] == ["data/in.txt"]
        chunks: list[str] = []
        streamed = runner.execute("for i in range(3): print(i, flush=True)", on_stdout=chunks.append)
        assert "".join(chunks) == streamed.stdout == "0\n1\n2\n"
        labels = {"label": f"{LABEL_RUNNER}={fleet.runner_id}"}
        assert remote_client.api.containers(all=True, filters=labels)
        assert not docker_client.api.containers(all=True, filters=labels)  # nothing on the local engine
    assert not remote_client.api.containers(all=True, filters=labels)
