"""`mf parked list|retry|drop`: parked events are listed with their reason, re-applied
through the projection (once the cause is fixed), or dropped."""

from __future__ import annotations

from contracts.wire import HEADER_MSG_ID
from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from services.ops.parked import drop_parked, list_parked, retry_parked
from tests.factories import note, pending, project_proposed
from tests.integration.ledger_projection import LedgerProjection
from tests.integration.ops_cli import run_cli


async def poisoned_log(store, nats_client) -> None:
    """p1 proposed (1), notes cut (2), poison (3), welded (4); an undecodable message (5)."""
    result = await store.append("project", "p1", [pending(project_proposed("p1"), "p1")], 0)
    notes = [pending(note("p1", text), "p1") for text in ("cut", "poison", "welded")]
    await store.append("project", "p1", notes, result.version)
    await nats_client.jetstream().publish(
        store.scheme.event("project", "p2", "proposed"),
        b"{broken",
        stream=store.stream,
        headers={HEADER_MSG_ID: "broken-1"},
    )


async def ledger(pool, schema) -> list[int]:
    rows = await pool.fetch(f'SELECT sequence FROM "{schema}".ledger ORDER BY sequence')
    return [row["sequence"] for row in rows]


async def test_parked_events_are_listed_retried_once_fixed_and_dropped(infrastructure, nats_client):
    store = infrastructure.store
    await poisoned_log(store, nats_client)
    schema = infrastructure.schema("ledger")
    admin = await create_pool(infrastructure.database_url, "public", max_size=3)
    try:
        strict = LedgerProjection(refuse_note="poison")
        await ProjectionRunner(strict, store, admin, schema).catch_up()
        parked = await list_parked(admin, schema, "ledger")
        assert [(p.sequence, p.reason.split(":")[0]) for p in parked] == [
            (3, "refused by projection"),
            (5, "undecodable"),
        ]

        still = await retry_parked(strict, store, admin, schema, [3])
        assert still.applied == [] and "poison" in still.failed[3]
        assert [p.sequence for p in await list_parked(admin, schema)] == [3, 5]

        fixed = LedgerProjection()
        result = await retry_parked(fixed, store, admin, schema)
        assert result.applied == [3] and list(result.failed) == [5]
        assert await ledger(admin, schema) == [1, 2, 3, 4]
        assert fixed.committed == [{"p1"}]  # the live signal of the re-applied event
        assert [p.sequence for p in await list_parked(admin, schema)] == [5]

        assert await drop_parked(admin, schema, "ledger", [5]) == [5]
        assert await list_parked(admin, schema) == []
        assert await ledger(admin, schema) == [1, 2, 3, 4]  # nothing applied twice
    finally:
        await admin.close()


async def test_parked_from_the_cli(infrastructure, nats_client):
    store = infrastructure.store
    await poisoned_log(store, nats_client)
    schema = infrastructure.schema("ledger")
    admin = await create_pool(infrastructure.database_url, "public", max_size=3)
    try:
        await ProjectionRunner(
            LedgerProjection(refuse_note="poison"), store, admin, schema
        ).catch_up()
        listed = await run_cli(infrastructure, "parked", "list")
        assert listed.exit_code == 0, listed.stderr
        assert "seq 3" in listed.stdout and "seq 5" in listed.stdout and "2 parked" in listed.stdout
        nothing = await run_cli(infrastructure, "parked", "retry", "ledger")
        assert nothing.exit_code != 0 and "--seq N" in nothing.stderr
        # the CLI's ledger projection accepts the poison note: retrying fixes 3, not 5
        retried = await run_cli(infrastructure, "parked", "retry", "ledger", "--all")
        assert retried.exit_code == 1
        assert "applied: [3]" in retried.stdout and "still parked: 5: undecodable" in retried.stdout
        dropped = await run_cli(infrastructure, "parked", "drop", "ledger", "--seq", "5")
        assert dropped.exit_code == 0 and "dropped: [5]" in dropped.stdout
        assert await list_parked(admin, schema) == []
        assert await ledger(admin, schema) == [1, 2, 3, 4]
    finally:
        await admin.close()
