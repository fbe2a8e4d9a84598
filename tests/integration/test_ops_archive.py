"""`mf events export` / `import`: a round trip into a fresh, empty stream keeps every event,
its order, subject, bytes and headers; an import into a stream with events is refused."""

from __future__ import annotations

import json

import pytest

from contracts.wire import HEADER_MSG_ID
from infra.streams import EventStreamSpec, delete_stream, ensure_event_stream
from services.ops.archive import (
    SERVER_INSTRUCTIONS,
    ArchiveError,
    export_events,
    import_events,
)
from tests.integration.ops_cli import run_cli
from tests.integration.ops_network import seed_network


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_instructions(headers: dict) -> dict:
    return {k: v for k, v in headers.items() if not k.startswith(SERVER_INSTRUCTIONS)}


async def recreate_empty(infrastructure, nats_client) -> None:
    spec = EventStreamSpec(infrastructure.settings.stream, infrastructure.scheme)
    await delete_stream(nats_client, spec.name)
    await ensure_event_stream(nats_client, spec)


async def test_an_export_imported_into_an_empty_stream_is_the_same_log(
    infrastructure, nats_client, tmp_path
):
    store = infrastructure.store
    await seed_network(store, projects=4)  # plain appends and atomic batches
    js = nats_client.jetstream()
    await js.publish(
        store.scheme.event("project", "px", "proposed"),
        b"\xff not utf-8, not json",
        stream=store.stream,
        headers={HEADER_MSG_ID: "raw-1", "X-Custom": "kept"},
    )
    head = await store.last_sequence()
    exported = tmp_path / "events.jsonl"
    result = await export_events(store, exported)
    assert (result.count, result.first, result.last) == (head, 1, head)
    original = lines(exported)
    assert [line["sequence"] for line in original] == list(range(1, head + 1))
    assert original[-1]["body_base64"] and original[-1]["headers"]["X-Custom"] == "kept"
    assert any("Nats-Batch-Id" in line["headers"] for line in original)

    await recreate_empty(infrastructure, nats_client)
    imported = await import_events(store, exported, window=8)
    assert (imported.count, imported.first, imported.last) == (head, 1, head)
    assert imported.same_sequences

    again = tmp_path / "again.jsonl"
    await export_events(store, again)
    copy = lines(again)
    assert len(copy) == len(original)
    for before, after in zip(original, copy, strict=True):
        assert after["sequence"] == before["sequence"]
        assert after["subject"] == before["subject"]
        assert after.get("body") == before.get("body")
        assert after.get("body_base64") == before.get("body_base64")
        assert after["headers"] == without_instructions(before["headers"])
    ids = [line["headers"][HEADER_MSG_ID] for line in copy]
    assert len(ids) == len(set(ids))
    # the imported log is usable: aggregates load, in order, with their versions
    history = await store.load(
        "project", (await store.read(7, 1))[0].decode().envelope.aggregate_id
    )
    assert history.events[0].type == "project.proposed"

    with pytest.raises(ArchiveError, match=f"holds {head} messages"):
        await import_events(store, exported)
    assert await store.last_sequence() == head


async def test_export_and_import_from_the_cli(infrastructure, nats_client, tmp_path):
    await seed_network(infrastructure.store, projects=2)
    head = await infrastructure.store.last_sequence()
    archive = tmp_path / "archive.jsonl"
    cli = await run_cli(infrastructure, "events", "export", "--to", str(archive))
    assert cli.exit_code == 0, cli.stderr
    assert f"exported {head} events (sequences 1..{head})" in cli.stdout
    refused = await run_cli(infrastructure, "events", "import", "--from", str(archive))
    assert refused.exit_code == 1 and "import only into an empty stream" in refused.stderr

    await recreate_empty(infrastructure, nats_client)
    cli = await run_cli(infrastructure, "events", "import", "--from", str(archive))
    assert cli.exit_code == 0, cli.stderr
    assert f"imported {head} events (1..{head}, same sequences as exported)" in cli.stdout
    assert await infrastructure.store.last_sequence() == head
