#!/usr/bin/env bash
# Installs the system packages the test suite needs on a fresh Debian machine (run as root).
# Idempotent: what is already there is left alone.
set -euo pipefail

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v bash >/dev/null 2>&1 || need+=(bash)
command -v npm >/dev/null 2>&1 || need+=(npm)

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup-test-env: missing ${need[*]}; run as root or install them yourself" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
echo "setup-test-env: node $(node --version), bash ${BASH_VERSION}"
