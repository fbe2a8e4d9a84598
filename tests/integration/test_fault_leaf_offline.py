"""A multifactory site's leaf node (infra/nats/leaf.conf + site-mirror.json): the site reads
the log from its local mirror, its appends reach the hub through the leaf, and when the hub
is unreachable the site keeps reading (and projecting) while appends fail cleanly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from infra.embedded import EmbeddedNats, free_port
from infra.eventstore import EventStoreError
from infra.jetstream_store import JetStreamEventStore
from infra.nats_connection import connect_nats
from infra.projections import ProjectionRunner
from infra.streams import EventStreamSpec, ensure_event_stream
from tests.factories import note, pending, project_proposed
from tests.integration.ledger_projection import LedgerProjection
from tests.waiting import eventually

NATS_DIR = Path(__file__).resolve().parents[2] / "infra" / "nats"


class ConfiguredNats(EmbeddedNats):
    """An embedded nats-server run with a given configuration text."""

    def __init__(self, data_dir: Path, text: str) -> None:
        super().__init__(data_dir)
        self.text = text

    def config(self) -> str:
        return self.text


def hub_config(server: ConfiguredNats, leaf_port: int) -> str:
    store = json.dumps(str(server.data_dir / "jetstream"))
    return (
        f"server_name: hub\nlisten: 127.0.0.1:{server.port}\n"
        f"http: 127.0.0.1:{server.monitor_port}\n"
        f"jetstream {{ store_dir: {store}, domain: hub }}\n"
        f"leafnodes {{ listen: 127.0.0.1:{leaf_port} }}\n"
    )


def site_config(server: ConfiguredNats, leaf_port: int) -> str:
    """The shipped leaf.conf, pointed at the test hub and a test directory."""
    text = (NATS_DIR / "leaf.conf").read_text()
    text = text.replace("listen: 127.0.0.1:4222", f"listen: 127.0.0.1:{server.port}")
    text = text.replace("http: 127.0.0.1:8222", f"http: 127.0.0.1:{server.monitor_port}")
    text = text.replace(
        '"/var/lib/multifactory/nats-leaf"', json.dumps(str(server.data_dir / "jetstream"))
    )
    return re.sub(
        r"urls: \[[^\]]*\]", f'urls: ["nats-leaf://127.0.0.1:{leaf_port}"]', text, flags=re.S
    )


async def test_a_site_reads_and_projects_offline_and_writes_through_the_hub(
    tmp_path, scheme, pg_pool, pg_schema
):
    leaf_port = free_port()
    hub = ConfiguredNats(tmp_path / "hub", "")
    hub.text = hub_config(hub, leaf_port)
    site = ConfiguredNats(tmp_path / "site", "")
    site.text = site_config(site, leaf_port)
    async with hub, site:
        at_hub = await connect_nats(hub.url, name="hub-service")
        at_site = await connect_nats(site.url, name="site-service")
        try:
            spec = EventStreamSpec(scheme.root.upper(), scheme)
            await ensure_event_stream(at_hub, spec)
            hub_store = JetStreamEventStore(at_hub, spec.name, scheme)
            proposed = await hub_store.append(
                "project", "p1", [pending(project_proposed("p1"), "p1")], 0
            )
            notes = [pending(note("p1", text), "p1") for text in ("cut", "welded")]
            await hub_store.append("project", "p1", notes, proposed.version)

            mirror = json.loads((NATS_DIR / "site-mirror.json").read_text())
            mirror["name"] = mirror["mirror"]["name"] = spec.name
            created = json.loads(
                (
                    await at_site.request(
                        f"$JS.API.STREAM.CREATE.{spec.name}", json.dumps(mirror).encode()
                    )
                ).data
            )
            assert "error" not in created, created

            site_store = JetStreamEventStore(at_site, spec.name, scheme, timeout=2)
            await eventually(lambda: site_store.last_sequence(), until=lambda last: last == 3)
            assert [m.body for m in await site_store.read()] == [
                m.body for m in await hub_store.read()
            ]
            # connected: the site's appends go to the hub's log, concurrency check included
            appended = await site_store.append(
                "project", "p1", [pending(note("p1", "painted"), "p1")], 3
            )
            assert appended.version == 4 and await hub_store.last_sequence() == 4
            await eventually(lambda: site_store.last_sequence(), until=lambda last: last == 4)

            await hub.stop()  # the internet link is down
            history = await site_store.load("project", "p1")
            assert [r.sequence for r in history.events] == [1, 2, 3, 4]
            runner = ProjectionRunner(LedgerProjection(), site_store, pg_pool, pg_schema)
            assert await runner.catch_up() == 4  # local views keep working offline
            with pytest.raises(EventStoreError):
                await site_store.append("project", "p1", [pending(note("p1", "offline"), "p1")], 4)
        finally:
            await at_site.close()
            await at_hub.close()
