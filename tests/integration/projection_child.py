"""Runs the ledger projection slowly in its own process, so a test can SIGKILL it mid-batch.

usage: projection_child.py NATS_URL DATABASE_URL STREAM ROOT SCHEMA
Prints "applied <seq>" after each row written inside the open transaction.
"""

from __future__ import annotations

import asyncio
import sys

from contracts.subjects import SubjectScheme
from infra.jetstream_store import JetStreamEventStore
from infra.nats_connection import connect_nats
from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from tests.integration.ledger_projection import LedgerProjection


async def main(nats_url: str, database_url: str, stream: str, root: str, schema: str) -> None:
    client = await connect_nats(nats_url)
    pool = await create_pool(database_url, schema)
    store = JetStreamEventStore(client, stream, SubjectScheme(root))
    projection = LedgerProjection(delay_per_event=0.02)
    projection.on_apply = lambda sequence: (
        sys.stdout.write(f"applied {sequence}\n") or sys.stdout.flush()
    )
    runner = ProjectionRunner(projection, store, pool, schema, batch_size=50)
    await runner.catch_up()
    sys.stdout.write("caught up\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
