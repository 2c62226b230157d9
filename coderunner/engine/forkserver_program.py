"""The Python kernel fork server: a program that imports what an IPython kernel needs once, then forks kernels.

Run as a script by the kernel's interpreter (``python forkserver_program.py [kernel arguments]``; the arguments
every kernel gets apart from ``-f``, so the server can parse them once), which may not have coderunner
installed: this file imports nothing from coderunner. :mod:`coderunner.engine.forkserver` starts it and talks
to it over its standard input and output, one JSON object per line:

* it says ``{"event": "ready", "pid": ..., "ipykernel": "7.4.0"}`` once its imports are done (or
  ``{"event": "error", "message": ...}`` and exits 1 if ipykernel cannot be imported);
* a request ``{"op": "fork", "id": N, "argv": [...], "cwd": ..., "env": {...}, "tag": ...}`` forks a child
  that becomes an ipykernel with exactly that argv (``-f <connection file>`` among them), working directory
  and environment; the server answers ``{"event": "forked", "id": N, "pid": ...}`` at once, and the child
  itself says ``{"event": "bound", "id": N, "setup": true}`` once its sockets are bound (connecting before that
  costs a ZMQ reconnect interval) and, if the request had ``"setup": {"max_spill": N}``, coderunner's hooks are
  installed (``setup`` says whether they were), or ``{"event": "failed", "id": N, "message": ...}``;
* ``{"event": "exit", "pid": ..., "status": ...}`` when a child ends (status as ``Popen.returncode``:
  negative for a signal);
* at the end of its input (the engine closed it, or died) it kills every child's process group and exits.

What a fork cannot carry stays out of the server: it starts no thread and no ZMQ context; each child makes its
own sockets, threads, event loop and kernel. What the server prepares is imports, the app's configuration and
the interactive shell, so children share those pages (``gc.freeze`` keeps the collector from touching, and so
copying, them) and skip that work.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import sys
import threading
import traceback
from typing import Any

# What an ipykernel imports while it initialises, beyond ipykernel.kernelapp itself (read off ipykernel 7 with
# IPython 9: the debugger's debugpy is most of it). A missing one is skipped: the child imports what it needs.
_PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "ipykernel.comm",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "IPython.utils.wildcard",
    "tornado.platform.asyncio",
    "tornado.queues",
    "faulthandler",
    "pdb",
    # What a kernel's first traceback imports (IPython's verbose tracebacks; _warm_tracebacks does the rest).
    "stack_data",
    "executing",
    "asttokens",
    "pure_eval",
    "fractions",
    "pygments.formatters.terminal256",
    "pygments.styles",
    "pygments.console",
)
_TAG_VAR = "CODERUNNER_KERNEL_TAG"
_STATUS_FD = 3  # in a child: its copy of the server's output, for the one line it sends
_NO_SHELL_VAR = "CODERUNNER_FORKSERVER_NO_SHELL"  # set when the server runs again without building the shell
_HOOKS = "_coderunner_hooks"  # the module name coderunner.engine.python gives its kernel hooks

# IPKernelApp.initialize is its parent's (command line, profile, config files: the same for every kernel of a
# server) followed by these steps (the per-kernel part: sockets, threads, shell). The server does the first part
# once and a child only these, when ipykernel's initialize is still exactly this sequence (checked at start).
_KERNEL_STEPS = (
    "init_pdb",
    "init_blackhole",
    "init_connection_file",
    "init_poller",
    "init_sockets",
    "init_heartbeat",
    "write_connection_file",
    "log_connection_info",
    "init_io",
    "init_signal",
    "init_kernel",
    "init_path",
    "init_shell",
    "init_gui_pylab",
    "init_extensions",
    "init_code",
)


def _set_dumpable(value: int) -> None:
    """Set PR_SET_DUMPABLE (0: code of the same user can reach neither this process's memory nor its pipes).

    The server is not dumpable, so kernels cannot write requests into its pipes or read its events; children
    set 1 again, so the engine can read their /proc figures and they can read their own.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(4, value, 0, 0, 0)  # PR_SET_DUMPABLE


def _send(fd: int, message: dict[str, Any]) -> None:
    # One write per line: writes under PIPE_BUF are atomic, so the server's lines and its children's
    # never interleave on the shared pipe.
    data = (json.dumps(message) + "\n").encode()
    with contextlib.suppress(OSError):
        os.write(fd, data)


def _rewrite_tag(tag: str) -> None:
    """Put the kernel's tag into the environment block the kernel shows in /proc/<pid>/environ.

    A forked process shows its parent's initial environment there, whatever ``os.environ`` says later; the
    engine finds a kernel's leftovers by this tag (coderunner.engine.processes). The server was started with a
    placeholder of the same length, overwritten here in place. Where that is not possible (another layout,
    a /proc without ``mem``) the child keeps the server's own tag, which the engine's clean-up also knows.
    """
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        # Fields 50 and 51 of stat (env_start, env_end); the split dropped the first two.
        start, end = int(fields[47]), int(fields[48])
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            block = mem.read(end - start)
            key = _TAG_VAR.encode() + b"="
            at = (b"\0" + block).find(b"\0" + key)  # the variable's start, at the block's start or after a NUL
            if at < 0:
                return
            value_at = at + len(key)
            value_end = block.find(b"\0", value_at)
            new = tag.encode()
            if (value_end if value_end >= 0 else len(block)) - value_at != len(new):
                return
            mem.seek(start + value_at)
            mem.write(new)
    except (OSError, ValueError, IndexError):
        pass


_prepared: tuple[Any, list[str]] | None = None  # (the app, the arguments it was prepared with)
_shell: Any = None  # the interactive shell _build_shell made for the children's kernels


def _prepare(argv: list[str]) -> None:
    """Do the kernel-independent part of IPKernelApp.initialize (see ``_KERNEL_STEPS``) here, once."""
    global _prepared
    import inspect
    import re

    from ipykernel.kernelapp import IPKernelApp
    from IPython.core.application import BaseIPythonApplication

    source = inspect.getsource(IPKernelApp.initialize)
    steps = tuple(name for name in re.findall(r"self\.(init_\w+|write_connection_file|log_connection_info)\(", source))
    if steps != _KERNEL_STEPS or "super().initialize(argv)" not in source:
        return  # another ipykernel: each child runs the whole initialize itself
    app = IPKernelApp.instance()
    BaseIPythonApplication.initialize(app, argv)  # type: ignore[no-untyped-call,unused-ignore]
    if app.subapp is None:
        _prepared = (app, argv)
        _build_shell(app)


def _build_shell(app: Any) -> None:
    """Build the interactive shell every kernel of this server would build the same way, before any fork.

    A shell is 32 configurables, the magics, the completer and the display machinery: about 12 ms of each
    child's start and the pages it writes. Built here, the kernel a child makes finds it as the shell singleton
    (``IPythonKernel`` asks for ``shell_class.instance(...)``), and ``_adopt_shell`` redoes in the child what
    a shell takes from its process at construction (the kernel, the working directory, the environment).
    Only for ipykernel's own kernel and shell classes, unconfigured, and only when building starts no thread
    (a fork with threads would hand children broken locks); else each child builds its shell itself.
    """
    from ipykernel.compiler import XCachingCompiler
    from ipykernel.ipkernel import IPythonKernel
    from ipykernel.zmqshell import ZMQInteractiveShell

    kernel_config, history = app.config.get("IPythonKernel", {}), app.config.get("HistoryManager", {})
    if app.kernel_class is not IPythonKernel or "shell_class" in kernel_config or "compiler_class" in kernel_config:
        return
    # A history kept in a file is saved by a thread the shell starts (coderunner's kernel arguments keep it off).
    # (Values from the command line are strings here, read by their trait only later.)
    if str(history.get("enabled", True)).lower() not in ("false", "0") and str(history.get("hist_file")) != ":memory:":
        return
    if os.environ.get(_NO_SHELL_VAR) or threading.active_count() > 1:
        return
    global _shell
    # As IPythonKernel.__init__ asks for it, less the kernel (``_adopt_shell`` gives it in the child).
    _shell = ZMQInteractiveShell.instance(  # type: ignore[no-untyped-call,unused-ignore]
        config=app.config,
        profile_dir=app.profile_dir,
        user_module=None,
        user_ns=app.user_ns,
        kernel=None,
        compiler_class=XCachingCompiler,
    )


def _adopt_shell(app: Any) -> None:
    """In a child, once its kernel exists: make the server's shell this kernel's, as if the kernel had built it."""
    from pathlib import Path

    shell = app.kernel.shell
    if shell is not _shell:
        return
    shell.parent = app.kernel
    shell.kernel = app.kernel
    shell.init_environment()  # the variables a kernel's shell sets (TERM, PAGER, ...), into this child's environment
    shell.starting_dir = os.getcwd()
    shell.history_manager.dir_hist[:] = [Path.cwd()]


def _initialized_app(argv: list[str]) -> Any:
    """In a child: the kernel app, initialised for ``argv`` (``-f <connection file>`` among them)."""
    from ipykernel.kernelapp import IPKernelApp

    if _prepared is not None:
        app, prepared_argv = _prepared
        if "-f" in argv:
            at = argv.index("-f")
            connection_file, rest = argv[at + 1], argv[:at] + argv[at + 2 :]
            if rest == prepared_argv:
                app.connection_file = connection_file
                for step in _KERNEL_STEPS:
                    if step == "init_signal":
                        with contextlib.suppress(Exception):  # as IPKernelApp.initialize does
                            app.init_signal()
                    elif step not in ("init_gui_pylab", "init_extensions", "init_code") or app.shell:
                        getattr(app, step)()
                    if step == "init_kernel":
                        _adopt_shell(app)
                sys.stdout.flush()
                sys.stderr.flush()
                return app
        IPKernelApp.clear_instance()  # other arguments: a fresh app, parsed the usual way, and its own shell
        if _shell is not None:
            type(_shell).clear_instance()
    app = IPKernelApp.instance()
    app.initialize(argv)  # type: ignore[no-untyped-call,unused-ignore]
    return app


def _warm_tracebacks() -> None:
    """Format one exception the way a kernel's shell does, so what that builds once is shared by every child.

    A kernel's first traceback compiles pygments' Python lexer and loads stack_data's machinery: 100-200 ms of
    each session's first error here, and seconds under gVisor on a loaded machine, where it held the reply to
    an interrupt past the grace (and the restart that followed cost the session its state).
    """
    from IPython.core import ultratb

    try:
        raise ZeroDivisionError("warm")
    except ZeroDivisionError:
        etype, value, tb = sys.exc_info()
    assert etype is not None and value is not None
    formatter = ultratb.AutoFormattedTB(mode="Context")  # type: ignore[no-untyped-call]
    formatter.structured_traceback(etype, value, tb)


def _load_hooks() -> None:
    """Load coderunner's kernel hooks (python_hooks.py, beside this file) as the kernels would, once for all."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python_hooks.py")
    import types

    with open(path, encoding="utf-8") as fh:
        code = compile(fh.read(), path, "exec")
    module = types.ModuleType(_HOOKS)
    exec(code, module.__dict__)
    sys.modules[_HOOKS] = module


def _set_up(app: Any, setup: Any) -> bool:
    """In a child, before its kernel starts: what the engine would otherwise send as its first (silent) execution.

    The warning filter and coderunner's hooks (``install(shell, max_spill)``), when the server loaded them and the
    request asks (``"setup": {"max_spill": N}``). Done here it costs no round trip to a fresh kernel (a kernel start
    went from 70.6 to 65.5 ms, median, on a 2-core machine). False: the engine sends the setup itself.
    """
    if not isinstance(setup, dict) or _HOOKS not in sys.modules or getattr(app, "shell", None) is None:
        return False
    import warnings

    warnings.filterwarnings("ignore", message="To exit: use", category=UserWarning)
    sys.modules[_HOOKS].install(app.shell, int(setup["max_spill"]))
    return True


def _become_kernel(request: dict[str, Any], status_fd: int) -> None:
    """In the forked child: turn into the kernel the request describes (never returns)."""
    rid = request["id"]
    try:
        _set_dumpable(1)
        os.setsid()  # the kernel leads its own process group, like a spawned one: interrupts and kills reach `!cmd`
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.dup2(status_fd, _STATUS_FD)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(2, 1)  # what a kernel writes to fd 1 before it captures it goes where the server's stderr goes
        # Nothing of the server's (its request pipe, other children's status copies) stays open in a kernel.
        os.closerange(_STATUS_FD + 1, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
        cwd = request["cwd"]
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(request["env"])
        if request.get("tag"):
            _rewrite_tag(request["tag"])
        # As `python -m ipykernel_launcher` started in cwd would have them.
        sys.path[0] = cwd
        import ipykernel_launcher  # type: ignore[import-untyped,unused-ignore]

        argv = list(request["argv"])
        sys.argv = [ipykernel_launcher.__file__, *argv]
        app = _initialized_app(argv)
        set_up = _set_up(app, request.get("setup"))
    except BaseException:  # anything: the engine must hear why, and the child must not return into the server
        _send(_STATUS_FD, {"event": "failed", "id": rid, "message": traceback.format_exc(limit=8)})
        os._exit(1)
    _send(_STATUS_FD, {"event": "bound", "id": rid, "pid": os.getpid(), "setup": set_up})
    os.close(_STATUS_FD)
    try:
        app.start()  # type: ignore[no-untyped-call,unused-ignore]
    finally:
        os._exit(0)


class _Server:
    def __init__(self) -> None:
        self.out = os.dup(1)
        os.dup2(2, 1)  # stray prints of imported code must not corrupt the protocol
        self.children: set[int] = set()
        self.buffer = b""

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            _send(self.out, {"event": "exit", "pid": pid, "status": code})

    def fork(self, request: dict[str, Any]) -> None:
        if threading.active_count() > 1:  # never: but forking with threads would hand children broken locks
            _send(self.out, {"event": "failed", "id": request.get("id"), "message": "the fork server has threads"})
            return
        try:
            pid = os.fork()
        except OSError as exc:  # e.g. at the process limit: the engine reports it, the server stays
            _send(self.out, {"event": "failed", "id": request.get("id"), "message": f"fork failed: {exc}"})
            return
        if pid == 0:
            _become_kernel(request, self.out)
        self.children.add(pid)
        _send(self.out, {"event": "forked", "id": request["id"], "pid": pid})

    def handle(self, line: bytes) -> None:
        try:
            request = json.loads(line)
        except ValueError:
            return
        if isinstance(request, dict) and request.get("op") == "fork":
            self.fork(request)

    def kill_children(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears of children
        while True:
            try:
                ready, _, _ = select.select([0, wake_r], [], [])
            except InterruptedError:
                continue
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(wake_r, 512)
                self.reap()
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    self.kill_children()
                    self.reap()
                    return
                self.buffer += data
                while b"\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\n", 1)
                    self.handle(line)
            self.reap()


def main() -> None:
    """Import, say ready, fork kernels on request until the input ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for kernels; the server is only ever killed
    _set_dumpable(0)
    server = _Server()
    try:
        import ipykernel
    except ImportError as exc:
        _send(server.out, {"event": "error", "message": f"ipykernel cannot be imported: {exc}"})
        sys.exit(1)
    for name in _PRELOAD:
        # A module that fails to import here is the child's to import (and to fail on, with a clear error).
        with contextlib.suppress(Exception):
            __import__(name)
    # What every kernel would do the same way: the hooks and the app's configuration. If either fails, the
    # children do it themselves (the kernel setup falls back to sending the hooks; see coderunner.engine.python).
    with contextlib.suppress(Exception):
        _load_hooks()
    with contextlib.suppress(Exception, SystemExit):  # a bad argument makes traitlets exit: children will say it
        _prepare(sys.argv[1:])
    if _shell is not None and threading.active_count() > 1:
        # Something in this IPython started a thread with the shell, and no child may be forked from here now:
        # run this program again (same pid and pipes: the engine still waits for "ready"), without the shell.
        sys.stderr.flush()
        os.dup2(server.out, 1)
        os.execve(sys.executable, sys.orig_argv, {**os.environ, _NO_SHELL_VAR: "1"})
    with contextlib.suppress(Exception):  # another IPython: its children format their first traceback cold
        _warm_tracebacks()
    gc.collect()
    gc.freeze()
    ready = {
        "event": "ready",
        "pid": os.getpid(),
        "ipykernel": getattr(ipykernel, "__version__", ""),
        "prepared": _prepared is not None,
        "hooks": _HOOKS in sys.modules,
        "shell": _shell is not None,
    }
    _send(server.out, ready)
    server.serve()


if __name__ == "__main__":
    main()
