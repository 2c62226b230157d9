"""The ``coderunner`` command line: run code (``exec``), and serve it (``serve``, ``mcp``)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence

from coderunner._version import __version__
from coderunner.errors import CodeRunnerError

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]
# Modules that add subcommands with their ``add_commands(subparsers)``; imported only when the parser is built,
# so that ``coderunner exec`` needs neither the server's nor Docker's dependencies.
_COMMAND_MODULES = ("coderunner.server.commands", "coderunner.backends.docker.commands")


def _cmd_exec(args: argparse.Namespace) -> int:
    from coderunner.client import CodeRunner

    code = sys.stdin.read() if args.code == "-" else args.code
    # One execution: a warm pool would only start a kernel nobody uses.
    with CodeRunner(backend=args.backend, pool_size=0) as runner:
        result = runner.execute(code, language=args.language, timeout=args.timeout)
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    for out in result.outputs:
        if out.type == "execute_result" and out.text is not None:
            sys.stdout.write(out.text + "\n")
        elif out.is_image:
            sys.stderr.write(f"[{', '.join(out.mime_types)} output not shown in a terminal]\n")
    if result.error is not None:
        if result.error.traceback:
            sys.stderr.write(result.error.traceback.rstrip("\n") + "\n")
        elif result.language != "bash" or result.status != "error":
            sys.stderr.write(f"{result.error}\n")
    for warning in result.warnings:
        sys.stderr.write(f"coderunner: {warning}\n")
    return result.exit_code


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="coderunner", description="Run code for AI agents in persistent, isolated sessions."
    )
    parser.add_argument("--version", action="version", version=f"coderunner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_exec = sub.add_parser("exec", help="run code once and exit with its status")
    p_exec.add_argument("code", help="the code to run, or '-' to read it from standard input")
    p_exec.add_argument("-l", "--language", default="python", help="python (default), bash or javascript")
    p_exec.add_argument("--timeout", type=float, default=None, help="seconds before the code is interrupted")
    p_exec.add_argument("--backend", default=None, help="backend name (default: CODERUNNER_BACKEND or inprocess)")
    p_exec.set_defaults(func=_cmd_exec)

    for name in _COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coderunner`` console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except CodeRunnerError as exc:
        print(f"coderunner: error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Import by name: subcommands register on the module `coderunner.cli`, not on this `__main__` copy.
    from coderunner.cli import main as _main

    sys.exit(_main())
