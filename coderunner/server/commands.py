"""The ``coderunner serve``, ``mcp`` and ``sandbox-agent`` subcommands (added by :mod:`coderunner.cli`).

Importing this module is cheap and needs no optional dependency: FastAPI and uvicorn are imported
only when ``serve`` runs, so ``coderunner --help`` works without the ``server`` extra.

Environment variables (each the default of the option next to it):

==========================  ======================  ==============================================
Variable                    Option                  Meaning
==========================  ======================  ==============================================
CODERUNNER_HOST             --host                  interface to bind (default 127.0.0.1)
CODERUNNER_PORT             --port                  TCP port (default 8223; 0 picks a free one)
CODERUNNER_API_KEY          --api-key               key clients send in X-API-Key
CODERUNNER_DB               --db                    job database file
CODERUNNER_MAX_JOBS         --max-jobs              jobs running at once (default 4)
CODERUNNER_JOB_RETENTION    --job-retention         seconds finished jobs are kept (0 = forever)
CODERUNNER_MAX_BODY_SIZE    --max-body-size         largest request body in bytes (default 100 MiB)
CODERUNNER_HEADER_TIMEOUT   --header-timeout        seconds to send a request's headers (default 10; 0 = none)
CODERUNNER_BODY_TIMEOUT     --body-timeout          seconds to send a body, +1 s per 64 KiB (default 30; 0 = none)
CODERUNNER_CORS_ORIGINS     --cors-origin           comma-separated origins allowed by CORS
CODERUNNER_ALLOWED_HOSTS    --allow-host            comma-separated extra Host names (keyless server)
CODERUNNER_BACKEND          --backend               backend serving the code (default inprocess)
==========================  ======================  ==============================================

A client slower than the header or body timeout gets a 408 and its connection is closed (slowloris
protection; the waits are event-loop timers, so slow clients hold no worker). A request that carries
its API key in its body (the InstaVM SDK's session creation) may send at most 16 KiB before it is
authenticated.

With a non-loopback ``--host``, the in-process backend's browser also refuses loopback and private
destinations (``BrowserSettings.public_bind``; allow rules in ``CODERUNNER_BROWSER_ALLOW`` still apply).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import ipaddress
import os
import socket
import sys
from typing import Any

from coderunner.errors import ConfigurationError, MissingDependencyError

__all__ = ["browser_backend_options", "is_loopback"]

_DEFAULT_PORT = "8223"


def is_loopback(host: str) -> bool:
    """True when ``host`` only reaches this machine (127.0.0.0/8, ::1, or a name resolving only there)."""
    if not host:
        return False  # "" binds every interface
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if host == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _cmd_agent(args: argparse.Namespace) -> int:
    from coderunner.server.agent import run_agent

    # Out of the environment before any kernel inherits it: the sandboxed code must not read it.
    api_key = os.environ.pop("CODERUNNER_AGENT_KEY", None) or None
    return run_agent(uds=args.uds, host=args.host, port=args.port, workdir=args.workdir, api_key=api_key)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the ``coderunner`` parser (called by :mod:`coderunner.cli`)."""
    env = os.environ
    serve = sub.add_parser(
        "serve",
        help="serve the REST API (InstaVM-compatible) over HTTP",
        description="Serve coderunner over HTTP: the InstaVM wire routes, sessions, files and jobs. "
        "Docs at /docs. Binding anything but loopback needs --api-key (or --insecure).",
    )
    serve.add_argument("--host", default=env.get("CODERUNNER_HOST", "127.0.0.1"), help="interface (CODERUNNER_HOST)")
    serve.add_argument(
        "--port", type=_port, default=env.get("CODERUNNER_PORT", _DEFAULT_PORT), help="port; 0 = any (CODERUNNER_PORT)"
    )
    serve.add_argument(
        "--api-key",
        default=env.get("CODERUNNER_API_KEY") or None,
        help="key clients must send in X-API-Key (CODERUNNER_API_KEY; prefer the variable: arguments show in ps)",
    )
    serve.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback host without an API key (trusted networks only)"
    )
    serve.add_argument("--backend", default=None, help="backend name (CODERUNNER_BACKEND; default inprocess)")
    serve.add_argument(
        "--db",
        default=env.get("CODERUNNER_DB") or None,
        help="job database file (CODERUNNER_DB; default: jobs.sqlite3 in the user data directory)",
    )
    serve.add_argument(
        "--max-jobs",
        type=_positive_int,
        default=env.get("CODERUNNER_MAX_JOBS", "4"),
        help="jobs running at once; the rest wait (CODERUNNER_MAX_JOBS)",
    )
    serve.add_argument(
        "--job-retention",
        type=_seconds,
        default=env.get("CODERUNNER_JOB_RETENTION", str(7 * 86_400)),
        help="seconds finished job records are kept; 0 = forever (CODERUNNER_JOB_RETENTION)",
    )
    serve.add_argument(
        "--max-body-size",
        type=_positive_int,
        default=env.get("CODERUNNER_MAX_BODY_SIZE", str(100 * 1024 * 1024)),
        help="largest request body in bytes (CODERUNNER_MAX_BODY_SIZE)",
    )
    serve.add_argument(
        "--header-timeout",
        type=_seconds,
        default=env.get("CODERUNNER_HEADER_TIMEOUT", "10"),
        help="seconds a client has to send a request's headers, else 408; 0 = no limit (CODERUNNER_HEADER_TIMEOUT)",
    )
    serve.add_argument(
        "--body-timeout",
        type=_seconds,
        default=env.get("CODERUNNER_BODY_TIMEOUT", "30"),
        help="seconds a client has to send a request body, plus 1 s per 64 KiB received, else 408; 0 = no limit "
        "(CODERUNNER_BODY_TIMEOUT)",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        help="origin allowed by CORS; repeat for more (CODERUNNER_CORS_ORIGINS, comma-separated)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=None,
        help="without an API key, also answer requests for this host name (DNS-rebinding guard); repeat for "
        "more (CODERUNNER_ALLOWED_HOSTS, comma-separated)",
    )
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(func=_cmd_serve)

    mcp = sub.add_parser("mcp", help="run the MCP server over stdio (for Claude Desktop, Cursor, ...)")
    mcp.add_argument("--backend", default=None, help="backend name (CODERUNNER_BACKEND; default inprocess)")
    mcp.set_defaults(func=_cmd_mcp)

    agent = sub.add_parser(
        "sandbox-agent",
        help="(internal) a sandbox box's main process: serve its engine to the host",
        description="Runs inside a sandbox box (a Docker container): the coderunner server for one session, on a "
        "unix socket (--uds) or TCP. Started by the backend; not meant to be run by hand.",
    )
    agent.add_argument("--uds", default=None, help="unix socket path to listen on")
    agent.add_argument("--host", default="127.0.0.1", help="TCP interface (without --uds)")
    agent.add_argument("--port", type=int, default=0, help="TCP port (without --uds; 0 = any)")
    agent.add_argument("--workdir", default="/work", help="the session directory")
    agent.set_defaults(func=_cmd_agent)


def _require(module: str, purpose: str, package: str | None = None) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(package or module, "server", purpose)


def browser_backend_options(backend: str, host: str) -> dict[str, Any]:
    """Backend options that harden the server's browser when it listens beyond loopback.

    On a non-loopback address, remote callers must not reach this machine's loopback or private
    network through the browser, so the egress policy gets ``public_bind=True`` (the other
    ``CODERUNNER_BROWSER_*`` settings still apply). The in-process backend runs its browser on this
    machine, the Docker backend in a container that may have a network (``browser_options``): both
    take ``browser_settings``; other backends get no extra option.
    """
    if backend not in ("inprocess", "docker") or is_loopback(host):
        return {}
    from coderunner.browser.config import BrowserSettings

    return {"browser_settings": BrowserSettings.from_env(public_bind=True)}


def _bind(host: str, port: int) -> socket.socket:
    """Create the listening socket ourselves, so ``--port 0`` can report the port it got."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it Nagle + delayed ACKs add ~40 ms to every response.
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _cmd_serve(args: argparse.Namespace) -> int:
    if not is_loopback(args.host) and not args.api_key and not args.insecure:
        print(
            f"coderunner serve: refusing to listen on {args.host or 'every interface'} without an API key: anyone who "
            "can reach that address could run code as this user. Set --api-key (or CODERUNNER_API_KEY), bind "
            "127.0.0.1, or pass --insecure if the network is trusted.",
            file=sys.stderr,
        )
        return 2
    _require("fastapi", "coderunner serve")
    _require("uvicorn", "coderunner serve")
    if importlib.util.find_spec("python_multipart") is None:  # its import name before version 0.0.13
        _require("multipart", "coderunner serve", "python-multipart")

    import uvicorn

    from coderunner.backend import create_async_backend
    from coderunner.config import Settings
    from coderunner.server.app import create_app, default_db_path

    settings = Settings.from_env(backend=args.backend)
    origins = args.cors_origin
    if origins is None:
        origins = [o.strip() for o in os.environ.get("CODERUNNER_CORS_ORIGINS", "").split(",") if o.strip()]
    hosts = args.allow_host
    if hosts is None:
        hosts = [h.strip() for h in os.environ.get("CODERUNNER_ALLOWED_HOSTS", "").split(",") if h.strip()]
    db = args.db or str(default_db_path())
    sock = _bind(args.host, args.port)
    try:
        # Built here rather than in the app's startup, so a bad backend configuration (unknown name,
        # missing INSTAVM_API_KEY, ...) is one clear error line instead of a failed-startup traceback.
        backend = create_async_backend(settings=settings, **browser_backend_options(settings.backend, args.host))
    except BaseException:
        sock.close()
        raise
    app = create_app(
        settings,
        backend=backend,
        api_key=args.api_key,
        db_path=db,
        max_jobs=args.max_jobs,
        job_retention=args.job_retention or None,
        max_body_bytes=args.max_body_size,
        cors_origins=origins,
        allowed_hosts=hosts,
        body_timeout=args.body_timeout or None,
    )
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"coderunner serve: listening on http://{shown}:{port} (backend {settings.backend}, jobs in {db}, "
        f"auth {'on' if args.api_key else 'off'})",
        file=sys.stderr,
        flush=True,
    )
    from coderunner.server.middleware import header_timeout_protocol

    config = uvicorn.Config(
        app,
        http=header_timeout_protocol(args.header_timeout) if args.header_timeout else "auto",
        log_level=args.log_level,
        lifespan="on",
        access_log=args.log_level == "debug",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        # The app's shutdown closed it already, unless startup never got that far (idempotent).
        asyncio.run(backend.aclose())
    return 0 if server.started else 1


def _cmd_mcp(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("coderunner.server.mcp") is None:
        print(
            "coderunner mcp: this installation has no MCP server module (coderunner.server.mcp). "
            "Upgrade coderunner, and install the extra with: pip install 'coderunner-sandbox[server]'",
            file=sys.stderr,
        )
        return 2
    _require("mcp", "coderunner mcp")
    module = importlib.import_module("coderunner.server.mcp")
    status = module.run_stdio(backend=args.backend)
    return int(status) if isinstance(status, int) else 0
