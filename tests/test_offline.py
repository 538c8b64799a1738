"""The test suite itself refuses the network: a test that would reach for it fails loudly."""

from __future__ import annotations

import socket

import pytest

from conftest import NetworkBlocked


def test_non_loopback_connections_are_refused():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(NetworkBlocked):
            s.connect(("192.0.2.1", 443))  # TEST-NET-1: refused before any packet is sent


def test_loopback_stays_usable():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.connect(server.getsockname())


def test_hub_libraries_are_offline():
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_loading_data_and_encoding_open_no_socket(monkeypatch):
    opened = []
    real = socket.socket.connect

    def spy(self, address):
        opened.append(address)
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", spy)
    from cud_bench.data.tasks import load_task
    from cud_bench.models.features import encode
    from shifts import get_shift

    texts = load_task("drug-reviews")["test"]["text"][:4]
    assert encode("minilm-l3", texts).shape == (4, 384)
    assert len(get_shift("word-synonym").apply("drug-reviews", 2)) > 0
    assert opened == []
