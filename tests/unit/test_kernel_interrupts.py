"""Interrupts reach the user's code and nothing else: a late one never costs a reply or the session's state."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from coderunner import CodeRunner, ExecutionResult

# Makes the kernel's own work after the code (sending execute_reply) take 0.6 s of CPU, as on a loaded
# machine: the engine sends its interrupt again after 0.25 s without a reply, so it lands there.
SLOW_REPLY = """
import time
_kernel = get_ipython().kernel
_send = _kernel.session.send
def _slow_send(stream, msg_or_type, *args, **kwargs):
    if msg_or_type == "execute_reply":
        t = time.monotonic()
        while time.monotonic() - t < 0.6:
            pass
    return _send(stream, msg_or_type, *args, **kwargs)
_kernel.session.send = _slow_send
"""


def test_a_timeout_on_a_slow_to_reply_kernel_keeps_the_state(tmp_path: Path) -> None:
    with CodeRunner(runtime_dir=tmp_path, pool_size=0) as runner, runner.session() as s:
        s.execute("kept = 'yes'")
        assert s.execute(SLOW_REPLY).error is None
        result = s.execute("while True:\n    pass", timeout=1)
        assert result.status == "timeout", result
        assert result.state_lost is False, (result.error, result.warnings)
        assert s.execute("print(kept)").stdout == "yes\n"


def test_a_second_interrupt_while_the_kernel_replies_loses_nothing(tmp_path: Path) -> None:
    with CodeRunner(runtime_dir=tmp_path, pool_size=0) as runner, runner.session() as s:
        s.execute("kept = 'yes'")
        assert s.execute(SLOW_REPLY).error is None
        pid = int(s.execute("import os; print(os.getpid())").stdout)
        started = threading.Event()
        done: list[ExecutionResult] = []
        worker = threading.Thread(
            target=lambda: done.append(
                s.execute(
                    "print('running', flush=True)\nwhile True:\n    pass", timeout=30, on_stdout=lambda _: started.set()
                )
            )
        )
        worker.start()
        assert started.wait(10)
        os.kill(pid, signal.SIGINT)
        threading.Event().wait(0.2)  # inside the 0.6 s reply
        os.kill(pid, signal.SIGINT)
        worker.join(20)
        assert done, "the execution got no reply"
        assert done[0].error is not None and done[0].error.name == "KeyboardInterrupt"
        assert done[0].state_lost is False
        assert s.execute("print(kept)").stdout == "yes\n"


def test_an_interrupt_before_the_code_starts_does_not_drop_the_request(tmp_path: Path) -> None:
    with CodeRunner(runtime_dir=tmp_path, pool_size=0) as runner, runner.session() as s:
        s.execute("kept = 'yes'")
        pid = int(s.execute("import os; print(os.getpid())").stdout)
        os.kill(pid, signal.SIGINT)  # the kernel is idle: nothing to interrupt
        result = s.execute("print(kept)")
        assert (result.stdout, result.error) == ("yes\n", None)
