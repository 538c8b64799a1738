#!/usr/bin/env bash
# Run a command in a fresh network namespace whose only interface is loopback (brought up),
# so neither Python, nor native code (onnxruntime's telemetry), nor worker processes can
# reach the network. CI runs the tests through it: .ci/run.
#   tests/netns.sh .venv/bin/python -m pytest tests/test_smoke_suite.py
# Needs `unshare` (apt package util-linux) and `ip` (apt package iproute2), and root
# (or, without root, unprivileged user namespaces for `unshare --map-root-user`).
set -euo pipefail
for tool in unshare ip; do
    if ! command -v "$tool" >/dev/null; then
        echo "netns.sh: '$tool' is missing (apt-get install util-linux iproute2)" >&2
        exit 2
    fi
done
if [ $# -eq 0 ]; then
    echo "usage: tests/netns.sh COMMAND [ARG...]" >&2
    exit 2
fi
as_root=()
[ "$(id -u)" = 0 ] || as_root=(--map-root-user)
export CUD_BENCH_NETNS=1  # tells tests/test_netns.py it runs inside the namespace
exec unshare --net "${as_root[@]}" -- bash -c 'ip link set lo up && exec "$@"' netns "$@"
