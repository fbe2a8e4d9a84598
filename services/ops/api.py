"""The ops HTTP API (tokens with role `ops`): status, history as of a time, parked events.

Mounted into a service's API by its wiring:

    api.include_router(ops_router(store=infra.store, pool=pool,
                                  token_secret=infra.token_secret,
                                  schema_prefix=infra.settings.schema_prefix))
"""

import asyncio
from datetime import datetime
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Query

from infra.auth import TokenClaims
from infra.eventstore import EventStore
from infra.http_auth import claims_dependency, require_role
from services.ops import history, status
from services.ops.parked import list_parked


def ops_router(
    *,
    store: EventStore,
    pool: asyncpg.Pool,
    token_secret: str,
    schema_prefix: str = "",
    prefix: str = "/ops",
) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["ops"])
    current_claims = claims_dependency(token_secret)

    def ops_claims(claims: Annotated[TokenClaims, Depends(current_claims)]) -> TokenClaims:
        require_role(claims, "ops")
        return claims

    Ops = Annotated[TokenClaims, Depends(ops_claims)]
    AsOf = Annotated[
        datetime | None, Query(description="ISO 8601 time; UTC when no offset is given")
    ]
    AtSeq = Annotated[int | None, Query(ge=0, description="Log sequence (inclusive)")]

    @router.get("/status")
    async def get_status(
        _claims: Ops,
        interval: Annotated[
            float,
            Query(
                ge=0,
                le=10,
                description="Seconds between the two samples that detect stuck consumers (0: one)",
            ),
        ] = 0,
    ) -> dict:
        """Every projection and durable consumer: checkpoint, lag, last error, parked."""
        if interval > 0:
            report = await status.status(
                store, pool, schema_prefix=schema_prefix, interval=interval
            )
        else:
            states, head = await asyncio.gather(
                status.sample(store, pool, schema_prefix=schema_prefix), store.last_sequence()
            )
            report = status.StatusReport(head, states, [])
        return status.document(report)

    @router.get("/history/projects/{project_id}")
    async def project_history(
        project_id: str, _claims: Ops, as_of: AsOf = None, at_seq: AtSeq = None
    ) -> dict:
        """The project as it was (folded from its events up to the cut) and its timeline."""
        try:
            found = await history.project_history(store, project_id, at_seq=at_seq, as_of=as_of)
        except history.HistoryError as error:
            raise HTTPException(422, str(error)) from error
        if found.state.status == "new" and not found.timeline:
            raise HTTPException(404, f"project {project_id} has no events up to that point")
        return history.project_document(found)

    @router.get("/history/workspaces/{workspace_id}")
    async def workspace_history(
        workspace_id: str, _claims: Ops, as_of: AsOf = None, at_seq: AtSeq = None
    ) -> dict:
        """The workspace, its members and its projects as they were, and its timeline."""
        try:
            found = await history.workspace_history(store, workspace_id, at_seq=at_seq, as_of=as_of)
        except history.HistoryError as error:
            raise HTTPException(422, str(error)) from error
        if not found.timeline:
            raise HTTPException(404, f"workspace {workspace_id} has no events up to that point")
        return history.workspace_document(found)

    @router.get("/parked")
    async def parked(
        _claims: Ops,
        projection: Annotated[str | None, Query(description="Only this projection")] = None,
    ) -> dict:
        """Events the projections parked, with the reason."""
        async with pool.acquire() as connection:
            schemas = await status.projection_schemas(connection, schema_prefix)
        found = []
        for schema in schemas:
            for message in await list_parked(pool, schema, projection):
                found.append(
                    {
                        "schema": message.schema,
                        "projection": message.projection,
                        "version": message.version,
                        "sequence": message.sequence,
                        "subject": message.subject,
                        "reason": message.reason,
                        "parked_at": message.parked_at.isoformat(),
                    }
                )
        return {"parked": found}

    return router
