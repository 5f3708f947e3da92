#!/bin/sh
# Install Debian's `prometheus` package (prometheus server + promtool) if either is missing.
# The deploy tests need both: promtool checks the config/rules, and the end-to-end test runs a
# real Prometheus server on loopback. Idempotent and quiet: does nothing when both are present.
# Needs root (or sudo) and apt-get; the package's own service is never started here.
set -eu

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_prometheus.sh: apt-get not found; install Prometheus (promtool + prometheus) by hand" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
fi

export DEBIAN_FRONTEND=noninteractive
# Don't let the package's postinst start a system-wide prometheus.service (containers and CI
# have no init anyway; on a workstation we don't want a daemon on :9090 as a side effect).
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    CREATED_POLICY=1
fi
LOG=$(mktemp)
cleanup() {
    if [ "$CREATED_POLICY" -eq 1 ]; then
        $SUDO rm -f "$POLICY"
    fi
    rm -f "$LOG"
}
trap cleanup EXIT

# apt prints progress and debconf notes even with -qq: keep them for the failure case only.
if ! { $SUDO apt-get update -qq && \
        $SUDO apt-get install -y -qq --no-install-recommends prometheus; } >"$LOG" 2>&1; then
    cat "$LOG" >&2
    echo "install_prometheus.sh: apt-get failed" >&2
    exit 1
fi

command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || {
    echo "install_prometheus.sh: prometheus installed but promtool/prometheus not on PATH" >&2
    exit 1
}
