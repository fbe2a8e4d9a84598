"""We refuse NATS servers too old for atomic batches and wildcard concurrency checks."""

from __future__ import annotations

import socket

import pytest

from infra.nats_connection import NatsVersionError, check_server_version, connect_nats

OLD_SERVER = "nats://127.0.0.1:4222"  # Debian's nats-server 2.9 on the CI machine


def _old_server_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=0.5) as connection:
            info = connection.recv(4096).decode(errors="replace")
    except OSError:
        return False
    return '"version":"2.' in info and '"version":"2.1' not in info


@pytest.mark.parametrize("version", ["2.9.10", "2.11.4", "2.10.0-beta.3", "1.4.1"])
def test_versions_below_2_12_are_refused_naming_the_minimum(version):
    with pytest.raises(NatsVersionError, match=r"needs nats-server >= 2\.12\.0"):
        check_server_version(version)


@pytest.mark.parametrize("version", ["2.12.0", "2.12.3", "2.15.1", "3.0.0"])
def test_recent_versions_are_accepted(version):
    check_server_version(version)


@pytest.mark.skipif(not _old_server_answers(), reason="no pre-2.12 NATS server at 127.0.0.1:4222")
async def test_connecting_to_the_old_debian_server_is_refused_clearly():
    with pytest.raises(NatsVersionError) as refused:
        await connect_nats(OLD_SERVER)
    message = str(refused.value)
    assert "2.9" in message and ">= 2.12.0" in message and "MF_NATS_URL" in message


async def test_the_embedded_server_is_recent_enough(nats_client):
    version = nats_client._server_info["version"]
    check_server_version(version)
