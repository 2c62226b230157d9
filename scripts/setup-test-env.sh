#!/usr/bin/env bash
# Installs the system packages the test suite needs on a fresh Debian machine (run as root).
# Idempotent: what is already there is left alone.
set -euo pipefail

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v bash >/dev/null 2>&1 || need+=(bash)
command -v npm >/dev/null 2>&1 || need+=(npm)
# Browser tests: Debian's Chromium (Playwright's own download cannot run here).
[ -x /usr/bin/chromium ] || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup-test-env: missing ${need[*]}; run as root or install them yourself" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Recommended packages stay: Chromium needs its fonts to render text.
    apt-get install -y -qq "${need[@]}"
fi
echo "setup-test-env: node $(node --version), bash ${BASH_VERSION}, $(/usr/bin/chromium --version 2>/dev/null)"
