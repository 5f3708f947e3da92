#!/bin/sh
# Install the Debian packages the tests use, those that are missing; idempotent and quiet.
#   prometheus  promtool checks the config and rules; the end-to-end test runs a real server
#   nginx       the deploy test runs the shipped proxy config in front of the API
#   chromium    the page tests drive Debian's Chromium through Playwright (no browser download)
#   nodejs npm  the client tests run the seed's client library (axios, from npm) in Node
# Needs root (or sudo) and apt-get. No package's own service is ever started here.
set -eu

# command:package pairs; a package is installed when its command is missing.
WANTED="promtool:prometheus prometheus:prometheus nginx:nginx chromium:chromium node:nodejs npm:npm"

MISSING=""
for pair in $WANTED; do
    cmd=${pair%%:*}
    pkg=${pair##*:}
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
        case " $MISSING " in *" $pkg "*) ;; *) MISSING="$MISSING $pkg" ;; esac
    fi
done
[ -z "$MISSING" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_test_tools.sh: apt-get not found; install by hand:$MISSING" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
fi

export DEBIAN_FRONTEND=noninteractive
# Don't let the packages' postinst start system-wide services (prometheus on :9090, nginx on
# :80): containers and CI have no init anyway, and a workstation wants no daemons as a side
# effect.
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
# shellcheck disable=SC2086
if ! { $SUDO apt-get update -qq && \
        $SUDO apt-get install -y -qq --no-install-recommends $MISSING; } >"$LOG" 2>&1; then
    cat "$LOG" >&2
    echo "install_test_tools.sh: apt-get failed installing:$MISSING" >&2
    exit 1
fi
