# The coderunner sandbox image: python (ipykernel), bash and node (and Chromium with Playwright when EXTRAS has
# "browser"), plus coderunner itself, which runs inside as the session's engine (`coderunner serve` / the Docker
# backend's agent). Built by `coderunner image build` (or automatically by the Docker backend) from a context
# holding this file and deps/ + own/ wheels fetched on the host, so it builds with `docker build --network none`
# when the base already has node, npm and bash (and chromium when EXTRAS has "browser").
#
# Build args:
#   BASE     base image: a Debian-like image with python3 >= 3.10 (default python:3.12-slim; offline,
#            docker/build-base.sh makes coderunner-base:bookworm)
#   EXTRAS   coderunner extras to install (default "server"; "datascience" adds numpy, pandas, matplotlib,
#            pillow; "browser" adds Playwright, and Debian's Chromium when the base has none)
#   UID      the unprivileged user's id (the backend runs containers as this id or as yours)
ARG BASE=python:3.12-slim
FROM ${BASE}
ARG EXTRAS=server
ARG UID=1000

USER root
SHELL ["/bin/sh", "-eu", "-c"]

# bash, node, npm (and chromium) come with the offline base; on a registry base (python:*-slim) they are
# installed here, which is the only step that needs network.
RUN missing=""; \
    command -v bash >/dev/null 2>&1 || missing="$missing bash"; \
    command -v node >/dev/null 2>&1 || missing="$missing nodejs"; \
    command -v npm >/dev/null 2>&1 || missing="$missing npm"; \
    case ",$EXTRAS," in *,browser,*) \
        command -v chromium >/dev/null 2>&1 || missing="$missing chromium fonts-liberation fonts-dejavu-core"; \
        ldconfig -p | grep -q libatomic.so.1 || missing="$missing libatomic1";; \
    esac; \
    if [ -n "$missing" ]; then \
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# Wheels fetched on the host (no index is ever reached from here): dependencies first, in their own layer,
# so a change to coderunner's code only redoes the small layer after it. Debian marks its python
# "externally managed"; in a single-purpose sandbox pip installs are the point. pip itself comes from the
# wheels when the base has none (pip runs straight from its wheel file).
COPY deps /tmp/deps
RUN rm -f /usr/lib/python3*/EXTERNALLY-MANAGED; \
    if ! python3 -m pip --version >/dev/null 2>&1; then \
        python3 "$(ls /tmp/deps/pip-*.whl | head -n 1)/pip" install -q --no-index /tmp/deps/pip-*.whl; \
    fi; \
    python3 -m pip install -q --no-cache-dir --no-index --no-deps --disable-pip-version-check /tmp/deps/*.whl; \
    rm -rf /tmp/deps /root/.cache
COPY own /tmp/own
RUN python3 -m pip install -q --no-cache-dir --no-index --no-deps --disable-pip-version-check /tmp/own/*.whl; \
    rm -rf /tmp/own /root/.cache

# An unprivileged user; the backend adds read-only /, a tmpfs HOME and /tmp, and a bind-mounted /work.
# `python` as well as `python3`: code and tools written for other images call it by that name.
RUN command -v python >/dev/null 2>&1 || ln -s "$(command -v python3)" /usr/local/bin/python; \
    echo "sandbox:x:${UID}:${UID}:coderunner sandbox:/home/sandbox:/bin/bash" >>/etc/passwd; \
    echo "sandbox:x:${UID}:" >>/etc/group; \
    mkdir -p /home/sandbox /work /run/coderunner; \
    chown "${UID}:${UID}" /home/sandbox /work /run/coderunner

ENV HOME=/home/sandbox \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    CODERUNNER_RUNTIME_DIR=/tmp/coderunner \
    CODERUNNER_HOST=0.0.0.0
USER ${UID}
WORKDIR /work
EXPOSE 8223
LABEL org.coderunner.image="sandbox"
# Server image mode: `docker run ... IMAGE` serves REST (+ MCP) on port 8223. Set CODERUNNER_API_KEY, or
# pass `coderunner serve --host 127.0.0.1` with --network host. The Docker backend overrides the command.
CMD ["coderunner", "serve", "--port", "8223"]
