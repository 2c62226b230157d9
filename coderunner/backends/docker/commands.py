"""The ``coderunner image build|status|prune`` subcommands (the Docker backend's sandbox image).

Added by :mod:`coderunner.cli`, which imports this module lazily. Importing it needs no optional
dependency; the ``docker`` package is imported when an ``image`` command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from coderunner._env import parse_flag

__all__: list[str] = []


def _spec(args: argparse.Namespace) -> Any:
    from coderunner.backends.docker.image import ImageSpec

    return ImageSpec(base=args.base, datascience=args.datascience, browser=args.browser)


def _cmd_build(args: argparse.Namespace) -> int:
    from coderunner.backends.docker.connection import connect
    from coderunner.backends.docker.image import IMAGE_REPO, build_image, expected_tag

    client = connect()
    spec = _spec(args)
    tag = expected_tag(client, spec)
    if not args.force and any(tag in image.tags for image in client.images.list(name=IMAGE_REPO)):
        print(f"coderunner image: {tag} is up to date (--force rebuilds it)", file=sys.stderr)
    else:
        build_image(client, spec, tag=tag)
    if args.tag:
        client.images.get(tag).tag(args.tag)
        print(f"coderunner image: tagged {tag} as {args.tag}", file=sys.stderr)
    print(tag)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from coderunner.backends.docker.connection import connect
    from coderunner.backends.docker.disk import size_text
    from coderunner.backends.docker.image import IMAGE_REPO, expected_tag
    from coderunner.backends.sandbox.contract import LABEL_IMAGE, LABEL_MANAGED, LABEL_RUNNER

    client = connect()
    info = client.info()
    runtimes = ", ".join(sorted((info.get("Runtimes") or {}).keys()))
    print(f"engine:   Docker {info.get('ServerVersion')} at {client.api.base_url} (runtimes: {runtimes})")
    current = expected_tag(client, _spec(args))
    print(f"expected: {current}")
    images = client.images.list(filters={"label": f"{LABEL_IMAGE}=sandbox"})
    if not images:
        print("images:   none built yet (the Docker backend builds one on first use; or run 'coderunner image build')")
    for image in images:
        tags = [t for t in image.tags if t.startswith(IMAGE_REPO)] or ["<untagged>"]
        created = image.attrs.get("Created", "")[:19].replace("T", " ")
        mark = "  (current)" if current in image.tags else ""
        print(f"image:    {', '.join(tags)}  {size_text(image.attrs.get('Size', 0))}  created {created}{mark}")
    containers = client.api.containers(all=True, filters={"label": LABEL_MANAGED})
    runners = {(c.get("Labels") or {}).get(LABEL_RUNNER) for c in containers}
    print(f"sandboxes: {len(containers)} containers of {len(runners)} runners")
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from coderunner.backends.docker.connection import connect
    from coderunner.backends.docker.fleet import sweep_orphans
    from coderunner.backends.docker.image import IMAGE_REPO, expected_tag
    from coderunner.backends.sandbox.contract import LABEL_IMAGE
    from coderunner.config import Settings

    client = connect()
    removed = sweep_orphans(client, Settings.from_env().runtime_dir)
    print(f"coderunner image: removed {removed} containers left by runners that are gone", file=sys.stderr)
    keep = None if args.all else expected_tag(client, _spec(args))
    for image in client.images.list(filters={"label": f"{LABEL_IMAGE}=sandbox"}):
        if keep is not None and keep in image.tags:
            continue
        names = [t for t in image.tags if t.startswith(IMAGE_REPO)] or [image.short_id]
        try:
            for name in names:
                client.images.remove(name, noprune=False)
        except Exception as exc:  # in use by a running sandbox, most likely: report and go on
            print(f"coderunner image: kept {', '.join(names)}: {exc}", file=sys.stderr)
        else:
            print(f"coderunner image: removed {', '.join(names)}", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the ``coderunner`` parser (called by :mod:`coderunner.cli`)."""
    image = sub.add_parser(
        "image",
        help="build, inspect and prune the Docker backend's sandbox image",
        description="The Docker backend runs sessions in an image built locally from its Dockerfile and "
        "tagged by a hash of its content (never pulled). Without a registry, build the offline base first: "
        "sudo docker/build-base.sh.",
    )
    image_sub = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    for name, func, text in (
        ("build", _cmd_build, "build the image for this coderunner version (skipped when up to date)"),
        ("status", _cmd_status, "show the engine, the expected tag and the images built"),
        ("prune", _cmd_prune, "remove outdated sandbox images and containers of dead runners"),
    ):
        p = image_sub.add_parser(name, help=text)
        p.add_argument("--base", default=None, help="base image (CODERUNNER_DOCKER_BASE)")
        p.add_argument(
            "--datascience",
            type=parse_flag,
            default=None,
            metavar="1|0",
            help="numpy, pandas, matplotlib and pillow in the image (CODERUNNER_DOCKER_DATASCIENCE, default 1)",
        )
        p.add_argument(
            "--browser",
            type=parse_flag,
            default=None,
            metavar="1|0",
            help="Chromium and Playwright in the image, for browser sessions (CODERUNNER_DOCKER_BROWSER, default 1)",
        )
        p.set_defaults(func=func)
        if name == "build":
            p.add_argument("--force", action="store_true", help="rebuild even if the image exists")
            p.add_argument("--tag", default=None, help="also tag the image with this name (e.g. for docker run)")
        if name == "prune":
            p.add_argument("--all", action="store_true", help="remove the current image too")
