"""Hot round trip for bash and JavaScript sessions through CodeRunner, beside a fresh subprocess per call."""

from __future__ import annotations

import os
import subprocess

from _util import emit, summary, timed

from coderunner import CodeRunner

N = int(os.environ.get("BENCH_N", "300"))


if __name__ == "__main__":
    with CodeRunner(pool_size=0) as runner:
        bash = summary(timed(lambda: runner.execute("echo hi", "bash"), N))
        js = summary(timed(lambda: runner.execute("console.log(1 + 1)", "javascript"), N))
    # Baselines: what a stateless runner pays per call (a new process each time).
    bash_fresh = summary(timed(lambda: subprocess.run(["bash", "-c", "echo hi"], capture_output=True), 50))
    node_fresh = summary(timed(lambda: subprocess.run(["node", "-e", "console.log(1 + 1)"], capture_output=True), 20))
    emit(
        "lang_latency",
        {
            "coderunner_bash_echo": bash,
            "coderunner_javascript_console_log": js,
            "baseline_fresh_bash_process": bash_fresh,
            "baseline_fresh_node_process": node_fresh,
            "target": "median <= 10 ms each",
        },
    )
