#!/usr/bin/env bash
# Installs (if missing) and starts a Docker engine for the Docker backend's tests, without systemd.
#
#   scripts/docker-engine.sh [start]     install docker.io if needed, configure, start dockerd, wait until ready
#   scripts/docker-engine.sh stop        stop the dockerd this script started (by its PID)
#   scripts/docker-engine.sh status      say whether an engine answers
#   scripts/docker-engine.sh start-tcp PORT   a second, separate dockerd on tcp://127.0.0.1:PORT (remote-engine tests)
#   scripts/docker-engine.sh stop-tcp         stop that second dockerd
#
# The daemon runs WITHOUT a bridge and without touching the firewall (see shared/INFRA.md): containers get a
# loopback-only network namespace, and the host's routes and iptables rules stay as they are. When
# /usr/bin/runsc exists (Debian package 'runsc', installed here when CODERUNNER_WITH_RUNSC=1) it is
# registered as the 'runsc' runtime (gVisor). Idempotent: an engine that already answers is left alone.
set -euo pipefail

PIDFILE=/run/coderunner-dockerd.pid
LOG=/var/log/coderunner-dockerd.log
TCP_ROOT=/var/lib/coderunner-dockerd-tcp
TCP_PIDFILE=/run/coderunner-dockerd-tcp.pid
TCP_LOG=/var/log/coderunner-dockerd-tcp.log
READY_TIMEOUT=${CODERUNNER_DOCKERD_READY_TIMEOUT:-60}

say() { echo "docker-engine: $*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        say "$1 needs root (it installs packages and starts dockerd); run it with sudo, or start Docker yourself"
        exit 1
    fi
}

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install_packages() {
    local want=()
    command -v dockerd >/dev/null 2>&1 || want+=(docker.io)
    if [ "${CODERUNNER_WITH_RUNSC:-0}" = 1 ] && [ ! -x /usr/bin/runsc ]; then
        want+=(runsc)
    fi
    [ ${#want[@]} -eq 0 ] && return 0
    need_root "installing ${want[*]}"
    say "installing ${want[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
}

daemon_json() {
    # No bridge, no iptables/ip-forward/masquerade: the host network is never touched.
    local runtimes=""
    if [ -x /usr/bin/runsc ]; then
        # --network=none: gVisor's own netstack off (Docker's namespace is loopback-only anyway), and
        # failed starts do not leak shim processes; --host-uds=all lets the host reach the in-container
        # server's unix socket through the bind-mounted directory.
        runtimes=', "runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--host-uds=all"]}}'
    fi
    printf '{"bridge": "none", "iptables": false, "ip-forward": false, "ip-masq": false%s}\n' "$runtimes"
}

write_config() {
    local wanted
    wanted=$(daemon_json)
    if [ -f /etc/docker/daemon.json ] && [ "$(cat /etc/docker/daemon.json)" = "$wanted" ]; then
        return 0
    fi
    need_root "writing /etc/docker/daemon.json"
    mkdir -p /etc/docker
    if [ -f /etc/docker/daemon.json ]; then
        cp /etc/docker/daemon.json "/etc/docker/daemon.json.bak.$(date +%s)"
    fi
    printf '%s\n' "$wanted" >/etc/docker/daemon.json
    say "wrote /etc/docker/daemon.json"
}

wait_ready() {
    local pid=$1 log=$2 deadline=$((SECONDS + READY_TIMEOUT))
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "dockerd exited during start-up; last lines of $log:"
            tail -n 20 "$log" >&2 || true
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            say "dockerd did not answer within ${READY_TIMEOUT}s; see $log"
            return 1
        fi
        sleep 0.1
    done
}

start() {
    if engine_answers; then
        say "engine already running (server $(docker version --format '{{.Server.Version}}'))"
        return 0
    fi
    install_packages
    write_config
    need_root "starting dockerd"
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        say "dockerd (pid $(cat "$PIDFILE")) is starting; waiting for it"
        wait_ready "$(cat "$PIDFILE")" "$LOG" engine_answers
        return 0
    fi
    # A stale pid file of a killed daemon would make dockerd refuse to start.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    nohup dockerd >"$LOG" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$PIDFILE"
    wait_ready "$pid" "$LOG" engine_answers
    say "dockerd ready (pid $pid, log $LOG$([ -x /usr/bin/runsc ] && echo ', runtime runsc available'))"
}

stop_pidfile() {
    local pidfile=$1 what=$2
    if [ ! -f "$pidfile" ]; then
        say "no $what started by this script"
        return 0
    fi
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$what (pid $pid) did not stop in 15 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
    say "$what stopped"
}

start_tcp() {
    local port=${1:?usage: docker-engine.sh start-tcp PORT}
    local host="tcp://127.0.0.1:$port"
    if DOCKER_HOST=$host engine_answers; then
        say "second engine already answers on $host"
        return 0
    fi
    install_packages
    need_root "starting a second dockerd"
    mkdir -p "$TCP_ROOT"/{data,exec}
    # Its own data root, exec root, pid file, socket and containerd namespace: it shares nothing with the
    # first daemon except the kernel. Bound to loopback only; without TLS, so never bind anything else.
    nohup dockerd \
        --config-file "$TCP_ROOT/daemon.json" \
        --data-root "$TCP_ROOT/data" --exec-root "$TCP_ROOT/exec" \
        --pidfile "$TCP_ROOT/docker.pid" \
        -H "unix://$TCP_ROOT/docker.sock" -H "$host" \
        >"$TCP_LOG" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$TCP_PIDFILE"
    wait_ready "$pid" "$TCP_LOG" env DOCKER_HOST="$host" docker version
    say "second dockerd ready on $host (pid $pid, log $TCP_LOG)"
}

case "${1:-start}" in
start)
    start
    ;;
stop)
    stop_pidfile "$PIDFILE" dockerd
    ;;
status)
    if engine_answers; then
        say "engine answers: server $(docker version --format '{{.Server.Version}}')"
    else
        say "no engine answers (${DOCKER_HOST:-unix:///var/run/docker.sock})"
        exit 1
    fi
    ;;
start-tcp)
    mkdir -p "$TCP_ROOT"
    daemon_json >"$TCP_ROOT/daemon.json"
    start_tcp "${2:-}"
    ;;
stop-tcp)
    stop_pidfile "$TCP_PIDFILE" "second dockerd"
    ;;
*)
    say "unknown command ${1}; use start, stop, status, start-tcp PORT or stop-tcp"
    exit 2
    ;;
esac
