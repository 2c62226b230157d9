"""A smolagents code executor (``RemotePythonExecutor``) whose Python runs in one stateful coderunner session.

::

    from smolagents import CodeAgent
    from coderunner.integrations.smolagents import CoderunnerExecutor

    with CodeAgent(tools=[], model=model, executor=CoderunnerExecutor()) as agent:   # CODERUNNER_BACKEND picks
        agent.run("What is the 20th Fibonacci number?")                              # inprocess, docker, ...

The agent's code actions run in a real IPython kernel (its variables, imports and files carry from step to
step), not in smolagents' restricted local interpreter: so ``import`` needs no allow-list, and the boundary is
the coderunner backend's (use docker for one; inprocess is not a security boundary). ``final_answer(...)``
ends the run with the answer's value; an image the code shows (a plot) or leaves as its last value comes back
as a ``PIL.Image``; an error or a timeout comes back to the model as an error observation, and the session
(with its variables) survives both. ``agent.cleanup()`` (or leaving the ``with``) closes the session and, when
the executor made it, the runner with its containers.

This module needs ``smolagents`` (``pip install 'coderunner-sandbox[smolagents]'``); importing it without that
raises :class:`~coderunner.errors.MissingDependencyError`.
"""

from __future__ import annotations

import base64
import io
import threading
from typing import Any

from coderunner.errors import CodeRunnerError, MissingDependencyError, SessionNotFoundError
from coderunner.integrations._runner import RunnerSource, sync_runner
from coderunner.models import ExecutionResult

try:
    from smolagents.local_python_executor import CodeOutput
    from smolagents.monitoring import AgentLogger, LogLevel
    from smolagents.remote_executors import RemotePythonExecutor
    from smolagents.utils import AgentError
except ImportError as exc:  # the [smolagents] extra is optional
    raise MissingDependencyError("smolagents", "smolagents", "The smolagents integration") from exc

__all__ = ["CoderunnerExecutor"]

DEFAULT_TIMEOUT = 30.0
"""Seconds one code action may run by default: smolagents' own local executor allows 30."""

_IMAGE_TYPES = ("image/png", "image/jpeg")


def _image(data: dict[str, Any]) -> Any | None:
    """A ``PIL.Image`` for the first image representation in a MIME bundle, else None."""
    for mime in _IMAGE_TYPES:
        if mime in data:
            import PIL.Image  # smolagents depends on pillow

            return PIL.Image.open(io.BytesIO(base64.b64decode(data[mime])))
    return None


def _output(result: ExecutionResult) -> Any:
    """What a code action produced, the way smolagents' remote executors report it.

    The last expression's value wins (its image if it has one, else its text); without one, the last image
    the code displayed (``plt.show()``), so a plot is never lost; else None.
    """
    value = next((out for out in reversed(result.outputs) if out.type == "execute_result"), None)
    if value is not None:
        image = _image(value.data)
        return image if image is not None else value.text
    for out in reversed(result.outputs):
        image = _image(out.data)
        if image is not None:
            return image
    return None


class CoderunnerExecutor(RemotePythonExecutor):  # type: ignore[misc]  # smolagents ships no type hints
    """smolagents' ``RemotePythonExecutor`` over one coderunner Python session, for ``CodeAgent(executor=...)``.

    Args:
        additional_imports: Packages to install in the session (only those it cannot already import).
        logger: smolagents' logger for the executor's messages (a quiet one of its own by default).
        runner: See :data:`~coderunner.integrations._runner.RunnerSource`: a runner of either colour (used as
            is, not closed), a backend name, or None for a runner of its own from ``CODERUNNER_*`` settings.
        timeout: Seconds one code action may run before it is interrupted (the session and its variables
            are kept); None for the runner's default.
        allow_pickle: smolagents' switch for pickled final answers and variables (off: JSON-safe values only).
        session_options: The session's options, e.g. ``env={...}``, ``memory="1g"``, ``cpus=1`` on docker.
    """

    def __init__(
        self,
        additional_imports: list[str] | None = None,
        logger: AgentLogger | None = None,
        *,
        runner: RunnerSource = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        allow_pickle: bool = False,
        **session_options: Any,
    ) -> None:
        """Start the session now (a warm one from the pool when there is one), then install ``additional_imports``."""
        super().__init__(list(additional_imports or []), logger or AgentLogger(level=LogLevel.OFF), allow_pickle)
        self.timeout = timeout
        self._runner, self._owns_runner = sync_runner(runner)
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._session = self._runner.session("python", **session_options)
        except BaseException:
            if self._owns_runner:
                self._runner.close()
            raise
        self.installed_packages = self.install_packages(self.additional_imports)

    @property
    def session_id(self) -> str:
        """The coderunner session the agent's code runs in."""
        session_id: str = self._session.session_id
        return session_id

    def run_code_raise_errors(self, code: str) -> CodeOutput:
        """Run one code action; its output, logs and whether it was the final answer (errors raise AgentError)."""
        if self._closed:
            raise AgentError("this coderunner executor was cleaned up; make a new one", self.logger)
        try:
            result = self._session.execute(code, timeout=self.timeout)
        except SessionNotFoundError as exc:
            raise AgentError(f"the sandbox session is gone: {exc.message}", self.logger) from exc
        except CodeRunnerError as exc:
            raise AgentError(f"the sandbox could not run the code: {exc.message}", self.logger) from exc
        logs = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.stderr else "")
        if result.warnings:
            logs += "".join(f"\n[sandbox] {warning}" for warning in result.warnings)
        error = result.error
        if error is not None and error.name == self.FINAL_ANSWER_EXCEPTION:
            answer = self._deserialize_final_answer(error.value, self.allow_pickle)
            return CodeOutput(output=answer, logs=logs, is_final_answer=True)
        if result.status == "timeout":
            raise AgentError(
                f"{logs}\nCode execution timed out after {self.timeout:g} seconds and was interrupted; the "
                "session's variables are kept. Make the code faster or do the work in smaller steps.",
                self.logger,
            )
        if not result.success:
            detail = (error.traceback or str(error)) if error is not None else f"exit code {result.exit_code}"
            name, value = (error.name, error.value) if error is not None else ("Error", "")
            raise AgentError(f"{logs}\nExecuting code yielded an error:\n{name}\n{value}\n{detail}", self.logger)
        return CodeOutput(output=_output(result), logs=logs, is_final_answer=False)

    def install_packages(self, additional_imports: list[str]) -> list[str]:
        """Install the packages the session cannot already import; returns the names asked for.

        The docker image is offline and carries the usual data-science stack, so most imports are already
        there: only the missing ones go to the package installer (which needs the network or a local index).
        """
        # smolagents' import lists may hold patterns ("pandas.*", "*"): the package is the first dotted part,
        # and a bare wildcard names nothing to install.
        packages = sorted({name.split(".")[0] for name in additional_imports} - {"*", ""})
        if not packages:
            return list(additional_imports)
        probe = (
            "import importlib.util as __cr_util\n"
            f"print(' '.join(n for n in {packages!r} "
            "if __cr_util.find_spec(n.replace('-', '_')) is None))\n"
            "del __cr_util"
        )
        missing = self._session.execute(probe).stdout.split()
        if missing:
            result = self._session.install_packages(missing)
            self.logger.log(result.stdout + result.stderr, level=LogLevel.INFO)
            if not result.success:
                raise AgentError(f"could not install {' '.join(missing)}: {result.error or result.stderr}", self.logger)
        return list(additional_imports)

    def cleanup(self) -> None:
        """Close the session and, when the executor made it, the runner (its containers go with it). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._session.close()
        except CodeRunnerError as exc:
            self.logger.log_error(f"closing the sandbox session: {exc.message}")
        finally:
            if self._owns_runner:
                self._runner.close()

    def delete(self) -> None:
        """The name smolagents' other remote executors give :meth:`cleanup`."""
        self.cleanup()

    def __enter__(self) -> CoderunnerExecutor:
        """Use the executor as a context manager that cleans up on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Clean up."""
        self.cleanup()
