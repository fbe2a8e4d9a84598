"""The NATS configurations we ship are valid for the nats-server we ship, and say what the
design promises: three replicas' worth of nodes, fsync before every ack, the hub domain."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from infra.embedded import nats_server_binary
from infra.settings import Settings

INFRA = Path(__file__).resolve().parents[2] / "infra"
CONFIGS = [
    INFRA / "nats" / "server.conf",
    INFRA / "nats" / "leaf.conf",
    *sorted((INFRA / "nats" / "cluster").glob("nats-*.conf")),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_the_shipped_config_is_valid(config: Path):
    checked = subprocess.run(
        [str(nats_server_binary()), "-c", str(config), "-t"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_cluster_has_three_routed_durable_nodes_in_the_hub_domain():
    common = (INFRA / "nats" / "cluster" / "cluster-common.conf").read_text()
    assert re.search(r"^\s*sync_interval: always", common, re.M)
    assert re.search(r"^\s*domain: hub", common, re.M)
    assert len(re.findall(r"nats-route://nats-\d:6222", common)) == 3
    names = {
        re.search(r"server_name: (\S+)", path.read_text()).group(1)
        for path in (INFRA / "nats" / "cluster").glob("nats-*.conf")
    }
    assert names == {"mf-nats-1", "mf-nats-2", "mf-nats-3"}


def test_compose_runs_every_node_with_its_config_and_three_replicas():
    compose = (INFRA / "compose.yaml").read_text()
    for node in (1, 2, 3):
        assert f'command: ["-c", "/etc/nats/nats-{node}.conf"]' in compose
    assert "./nats/cluster:/etc/nats:ro" in compose
    assert 'MF_STREAM_REPLICAS: "3"' in compose
    for service in ("projects", "projects-view", "matching", "notifications"):
        assert f'command: ["serve", "{service}"]' in compose


def test_compose_sets_only_settings_that_exist():
    compose = (INFRA / "compose.yaml").read_text()
    names = set(re.findall(r"^\s+(MF_[A-Z_]+):", compose, re.MULTILINE))
    assert {"MF_HTTP_PORT", "MF_NOTIFICATIONS_HTTP_PORT", "MF_MATCHING_HTTP_PORT"} <= names
    unknown = {name for name in names if name[3:].lower() not in Settings.model_fields}
    assert unknown == set(), f"compose.yaml sets variables no service reads: {unknown}"
