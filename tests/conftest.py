"""Test-wide guards: no hub, no network.

The whole suite runs with the hubs switched to offline mode and with every
non-loopback socket connection refused, so a test that would reach for the
network fails loudly instead of passing on a developer's online machine.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class NetworkBlocked(RuntimeError):
    """Raised by the guard when code under test opens a non-loopback connection."""


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost", "", b""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: resolving it would already be network use


def _guarded_connect(self, address):
    if not _is_local(address):
        raise NetworkBlocked(f"test tried to connect to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(address):
        raise NetworkBlocked(f"test tried to connect to {address!r}")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    yield
    socket.socket.connect = _real_connect
    socket.socket.connect_ex = _real_connect_ex


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke suite, run once per session through the CLI (native numerics, ``--jobs 2``): (out dir, run log).

    Shared because a cold run takes minutes: the end-to-end test and the
    reproducibility contract both read it, and neither may change it.
    """
    import contextlib
    import io

    from cud_bench.cli import main

    out = tmp_path_factory.mktemp("smoke")
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        assert main(["run", "--suite", "smoke", "--out", str(out), "--no-progress", "--jobs", "2"]) == 0
    return out, log.getvalue()


@pytest.fixture
def private_cache(tmp_path):
    """A factory of cache folders that link the shared cache's downloaded data and resources
    and hold nothing computed from them (features, teachers, corrupted texts): a run there
    computes everything anew, as on a fresh machine, without downloading."""
    from cud_bench.io import cache_dir

    def make(name: str) -> Path:
        root = tmp_path / name
        shared = cache_dir()
        for entry in [*shared.iterdir(), *(shared / "shifts").glob("*")]:
            rel = entry.relative_to(shared).as_posix()
            if rel != "shifts" and not rel.startswith(("features", "teachers", "shifts/corruption")):
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).symlink_to(entry)
        return root

    return make
