"""No traffic can leave: telemetry is off at import, and CI runs the tests in a loopback-only namespace.

``tests/netns.sh`` wraps a command in ``unshare --net`` (loopback brought up);
``.ci/run`` runs the test suite, the smoke suite included, through it. These
tests check the namespace by listing its interfaces and by talking to
loopback only: nothing here ever sends a packet to any other address.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("netns.sh")
REPO = Path(__file__).resolve().parent.parent


def interfaces() -> list[str]:
    """The network interfaces of this process's namespace (/proc/self/net is per namespace, /sys is not)."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


def _loopback_round_trip() -> bytes:
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"ping")
                return conn.recv(4)


@pytest.mark.skipif(os.environ.get("CUD_BENCH_NETNS") != "1", reason="runs inside tests/netns.sh (CI)")
def test_inside_the_namespace_only_loopback_exists():
    assert interfaces() == ["lo"]
    assert _loopback_round_trip() == b"ping"  # loopback is up: local servers in tests still work


def _can_unshare() -> bool:
    if not (sys.platform.startswith("linux") and shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run([str(SCRIPT), "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(os.environ.get("CUD_BENCH_NETNS") == "1", reason="already inside the namespace")
def test_the_wrapper_leaves_a_command_only_loopback():
    if not _can_unshare():
        pytest.skip("unshare --net is not permitted here (needs root or user namespaces)")
    code = "import sys; sys.path.insert(0, 'tests'); import test_netns as t; print(t.interfaces(), t._loopback_round_trip())"
    done = subprocess.run([str(SCRIPT), sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['lo'] b'ping'"


def test_the_wrapper_refuses_to_run_without_a_command():
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr


def test_importing_cud_bench_turns_telemetry_off_before_onnxruntime_loads():
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "HF_HUB_DISABLE_TELEMETRY")}
    code = (
        "import sys, os, cud_bench; assert 'onnxruntime' not in sys.modules; "
        "import cud_bench.models.encoder_defs.minilm_l3, onnxruntime; "
        "print(os.environ['ORT_DISABLE_TELEMETRY'], os.environ['HF_HUB_DISABLE_TELEMETRY'])"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]


def test_ci_runs_the_tests_inside_the_namespace():
    ci = (REPO / ".ci" / "run").read_text()
    assert "tests/netns.sh .venv/bin/python -m pytest" in ci
