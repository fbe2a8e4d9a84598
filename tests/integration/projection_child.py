"""Runs a projection slowly in its own process, so a test can SIGKILL it mid-batch.

usage: projection_child.py {ledger|workspace_view} NATS_URL DATABASE_URL STREAM ROOT SCHEMA
Prints "applied <seq>" while a batch is applied inside its still-open transaction.
"""

from __future__ import annotations

import asyncio
import sys

from contracts.subjects import SubjectScheme
from infra.jetstream_store import JetStreamEventStore
from infra.nats_connection import connect_nats
from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from services.projects.views import WorkspaceViewProjection
from tests.integration.ledger_projection import LedgerProjection


def report(sequence: int) -> None:
    sys.stdout.write(f"applied {sequence}\n")
    sys.stdout.flush()


class SlowWorkspaceView(WorkspaceViewProjection):
    async def apply(self, connection, events):
        changed = await super().apply(connection, events)
        report(events[-1].sequence)
        await asyncio.sleep(0.5)  # the batch is written but not committed yet
        return changed


async def main(kind: str, nats_url: str, database_url: str, stream: str, root: str, schema: str):
    client = await connect_nats(nats_url)
    pool = await create_pool(database_url, schema)
    store = JetStreamEventStore(client, stream, SubjectScheme(root))
    if kind == "ledger":
        projection = LedgerProjection(delay_per_event=0.02)
        projection.on_apply = report
    else:
        projection = SlowWorkspaceView()
    runner = ProjectionRunner(projection, store, pool, schema, batch_size=50)
    await runner.catch_up()
    sys.stdout.write("caught up\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
