#!/usr/bin/env bash
# Builds the sandbox's base image WITHOUT a container registry: a Debian bookworm root filesystem made with
# debootstrap (python3, bash, node, npm, and Debian's Chromium for browser sessions), loaded with `docker import`. For machines where `docker pull`
# cannot work (no registry reachable); with a registry, CODERUNNER_DOCKER_BASE=python:3.12-slim (the
# default) needs none of this.
#
#   docker/build-base.sh [IMAGE]        default IMAGE: coderunner-base:bookworm; skipped when it exists
#   FORCE=1 docker/build-base.sh        rebuild even if it exists
#
#   CODERUNNER_BASE_BROWSER=0 ...      leave Chromium out (about 300 MB less; no browser in Docker sessions)
#
# Needs root (debootstrap, chroot) and Debian's package mirror (CODERUNNER_DEBIAN_MIRROR). Takes one to two
# minutes. Downloaded packages are cached in CODERUNNER_BASE_CACHE (default /var/cache/coderunner-base).
set -euo pipefail

IMAGE=${1:-coderunner-base:bookworm}
SUITE=${CODERUNNER_DEBIAN_SUITE:-bookworm}
MIRROR=${CODERUNNER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${CODERUNNER_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CACHE=${CODERUNNER_BASE_CACHE:-/var/cache/coderunner-base}

say() { echo "build-base: $*" >&2; }

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE already exists (FORCE=1 to rebuild)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "needs root (debootstrap and chroot); run it with sudo"
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

ROOTFS=$(mktemp -d /var/tmp/coderunner-rootfs.XXXXXX)
cleanup() {
    umount "$ROOTFS/proc" 2>/dev/null || true
    rm -rf "$ROOTFS"
}
trap cleanup EXIT
mkdir -p "$CACHE"

say "debootstrap $SUITE into $ROOTFS"
# npm is NOT in --include: debootstrap's resolver cannot handle its virtual dependencies; apt in the chroot can.
debootstrap --variant=minbase --cache-dir="$CACHE" \
    --include=python3,nodejs,ca-certificates,procps \
    "$SUITE" "$ROOTFS" "$MIRROR" >/dev/null

PACKAGES=npm
if [ "${CODERUNNER_BASE_BROWSER:-1}" != 0 ]; then
    # A browser gets security fixes often: take Chromium from the security suite, as a Debian host does.
    # Fonts: without them pages render as boxes. libatomic1: Playwright's bundled node needs it.
    PACKAGES="$PACKAGES chromium fonts-liberation fonts-dejavu-core libatomic1"
    echo "deb $SECURITY_MIRROR $SUITE-security main" >"$ROOTFS/etc/apt/sources.list.d/security.list"
fi
say "installing $PACKAGES in the chroot"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
mount -t proc proc "$ROOTFS/proc"
chroot "$ROOTFS" /bin/sh -c "
    set -e
    export DEBIAN_FRONTEND=noninteractive
    # As root in a chroot: no _apt sandbox user to drop to, and no pty for dpkg progress.
    apt='apt-get -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0'
    \$apt update -qq
    \$apt install -y -qq --no-install-recommends $PACKAGES >/dev/null
    \$apt clean
"
rm -f "$ROOTFS/etc/apt/sources.list.d/security.list"
umount "$ROOTFS/proc"
# Keep the image small and free of this machine's details.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/debootstrap
: >"$ROOTFS/etc/resolv.conf"

say "docker import -> $IMAGE"
tar -C "$ROOTFS" -c . | docker import \
    -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/bash"]' \
    -m "coderunner offline base: debootstrap $SUITE minbase + python3, nodejs, npm (+ chromium: $PACKAGES)" \
    - "$IMAGE" >/dev/null
say "built $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
