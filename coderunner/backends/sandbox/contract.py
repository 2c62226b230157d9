"""The host<->agent contract of the sandbox image: paths inside a box, the agent's route prefix, owner labels."""

from __future__ import annotations

SANDBOX_UID = 1000
"""The image's unprivileged user; boxes run as it when the host user is root, else as the host user."""

IN_WORK = "/work"
"""The session directory inside a box."""
IN_SOCK_DIR = "/run/coderunner"
"""The directory inside a box holding the agent's socket (and, until the agent takes it, its key)."""
SOCK_NAME = "api.sock"
"""The agent's unix socket in :data:`IN_SOCK_DIR`."""
AGENT_PREFIX = "/_agent"
"""Routes only the host uses (session takeover, readiness, the fast execute)."""

# Labels on everything the host creates, so that the leftovers of a crashed owner can be found and removed.
LABEL_MANAGED = "org.coderunner.managed"
LABEL_RUNNER = "org.coderunner.runner"
LABEL_OWNER_PID = "org.coderunner.owner-pid"
LABEL_OWNER_START = "org.coderunner.owner-start"
LABEL_OWNER_HOST = "org.coderunner.owner-host"
LABEL_ROLE = "org.coderunner.role"
LABEL_IMAGE = "org.coderunner.image"
LABEL_HASH = "org.coderunner.content-hash"
LABEL_BROWSER = "org.coderunner.browser"
