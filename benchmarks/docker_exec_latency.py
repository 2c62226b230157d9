"""Hot execute round trip in a Docker session (host -> unix socket -> in-container engine) vs InProcess."""

from __future__ import annotations

import os

from _util import emit, summary, timed

from coderunner import CodeRunner
from coderunner.backends.docker import ImageSpec, connect, ensure_image

N = int(os.environ.get("BENCH_N", "300"))
CODE = "x = 1"


def hot(runner: CodeRunner, language: str = "python") -> list[float]:
    code = {"python": CODE, "bash": "x=1", "javascript": "var x = 1"}[language]
    runner.execute(code, language)
    return timed(lambda: runner.execute(code, language), N if language == "python" else N // 3)


if __name__ == "__main__":
    client = connect()
    image = ensure_image(client, ImageSpec())
    client.close()
    with CodeRunner(pool_size=0) as runner:
        inprocess = summary(hot(runner))
    with CodeRunner(backend="docker", image=image, pool_size=0) as runner:
        docker = summary(hot(runner))
        docker_bash = summary(hot(runner, "bash"))
        docker_js = summary(hot(runner, "javascript"))
    with CodeRunner(backend="docker", image=image, pool_size=0, track_files=False) as runner:
        docker_untracked = summary(hot(runner))
    emit(
        "docker_exec_latency",
        {
            "code": CODE,
            "inprocess_python": inprocess,
            "docker_python": docker,
            "docker_python_track_files_off": docker_untracked,
            "docker_bash": docker_bash,
            "docker_javascript": docker_js,
            "ratio_docker_vs_inprocess_median": round(docker["median_ms"] / inprocess["median_ms"], 2),
            "target": "docker median within 1.5x of inprocess",
        },
    )
