"""The audience projection: keeps the facts the rules need and writes the outbox.

For each event, in log order and inside the runner's transaction: load the facts, ask the
rules who is concerned, and, for events above the effects watermark, record the event, one
notification per concerned workspace (the feed outbox) and one pending delivery per
matching webhook endpoint. Then store the evolved facts. The checkpoint advances in the
same transaction, so an event's effects are written exactly once; the delivery workers and
the feed publisher drain them afterwards. While a rebuild applies events
(`infra.projections.rebuilding`), only the facts are stored: a rebuild causes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import asyncpg

from contracts.envelope import PendingEvent, RecordedEvent
from contracts.wire import encode_body, encode_headers
from infra.projections import rebuilding
from services.notifications.rules import (
    Facts,
    Participant,
    ProjectFacts,
    Recipient,
    audience,
    declared_capabilities,
    evolve_project,
    needed_capabilities,
    ordering_key,
    project_id_of,
)

PROJECTION_NAME = "notifications.audience"
PROJECTION_VERSION = 1

# The facts the rules need: rebuildable from the log, so created here (in the shadow schema
# too, when `mf replay` rebuilds the projection) rather than by a migration.
STATE_DDL = """
CREATE TABLE IF NOT EXISTS audience_projects (
    project_id text PRIMARY KEY,
    coordinator_workspace_id text NOT NULL,
    coordinator_member_id text NOT NULL,
    open_call boolean NOT NULL,
    capabilities text[] NOT NULL,
    status text NOT NULL
);
CREATE TABLE IF NOT EXISTS audience_participants (
    project_id text NOT NULL,
    role_id text NOT NULL,
    member_id text NOT NULL,
    workspace_id text NOT NULL,
    status text NOT NULL,
    PRIMARY KEY (project_id, role_id, member_id)
);
CREATE TABLE IF NOT EXISTS audience_members (
    member_id text PRIMARY KEY,
    workspace_id text NOT NULL,
    capabilities text[] NOT NULL
);
CREATE INDEX IF NOT EXISTS audience_members_capabilities
    ON audience_members USING gin (capabilities);
"""
STATE_TABLES = ("audience_projects", "audience_participants", "audience_members")
# The delivery log (sql/001_delivery_log.sql): effects already caused. A rebuild carries
# these over unchanged; it never recreates them.
EFFECT_TABLES = (
    "notification_events",
    "notifications",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
    "webhook_dead_letters",
    "effects_watermark",
)


class AudienceProjection:
    name = PROJECTION_NAME
    subject_filter = None  # workspaces, members, projects and the matcher's proposals
    preserved_tables = EFFECT_TABLES

    def __init__(
        self,
        *,
        version: int = PROJECTION_VERSION,
        on_commit: Callable[[set[str]], None] | None = None,
    ) -> None:
        self.version = version
        self.on_commit = on_commit

    async def setup(self, connection: asyncpg.Connection) -> None:
        """Create the state tables; a projection starting from sequence 0 (a new version, a
        reset checkpoint, a rebuild's shadow) starts from empty state. Effects are not state:
        their tables come from the migrations and are never emptied."""
        await connection.execute(STATE_DDL)
        position = await connection.fetchval(
            "SELECT last_seq FROM projection_checkpoints WHERE projection = $1 AND version = $2",
            self.name,
            self.version,
        )
        if not position:
            await connection.execute(f"TRUNCATE {', '.join(STATE_TABLES)}")

    async def apply(self, connection: asyncpg.Connection, events: list[RecordedEvent]) -> set[str]:
        if rebuilding.get():  # a rebuild into a shadow schema: state only, never effects
            for recorded in events:
                facts = await _load_facts(connection, recorded, with_holders=False)
                await _store_facts(connection, facts.project, recorded)
            return set()
        watermark = await connection.fetchval(
            "SELECT last_seq FROM effects_watermark WHERE singleton FOR UPDATE"
        )
        changed: set[str] = set()
        for recorded in events:
            effects = recorded.sequence > watermark
            facts = await _load_facts(connection, recorded, with_holders=effects)
            recipients = audience(facts, recorded.event, recorded.envelope)
            if recipients and effects:
                await _record_effects(connection, recorded, recipients)
                changed.update(recipient.workspace_id for recipient in recipients)
            await _store_facts(connection, facts.project, recorded)
        await connection.execute(
            "UPDATE effects_watermark SET last_seq = GREATEST(last_seq, $1) WHERE singleton",
            events[-1].sequence,
        )
        return changed

    async def after_commit(self, changed: set[str]) -> None:
        if changed and self.on_commit is not None:
            self.on_commit(changed)


async def _load_facts(
    connection: asyncpg.Connection, recorded: RecordedEvent, *, with_holders: bool
) -> Facts:
    project = None
    if (project_id := project_id_of(recorded.event)) is not None:
        project = await _load_project(connection, project_id)
    holders = {}
    if with_holders and (capabilities := needed_capabilities(recorded.event)):
        rows = await connection.fetch(
            "SELECT capability, array_agg(DISTINCT workspace_id) AS workspaces "
            "FROM audience_members, unnest(capabilities) AS capability "
            "WHERE capabilities && $1::text[] AND capability = ANY($1::text[]) "
            "GROUP BY capability",
            list(capabilities),
        )
        holders = {row["capability"]: frozenset(row["workspaces"]) for row in rows}
    return Facts(project=project, capability_holders=holders)


async def _load_project(connection: asyncpg.Connection, project_id: str) -> ProjectFacts | None:
    row = await connection.fetchrow(
        "SELECT * FROM audience_projects WHERE project_id = $1", project_id
    )
    if row is None:
        return None
    participants = await connection.fetch(
        "SELECT role_id, member_id, workspace_id, status FROM audience_participants "
        "WHERE project_id = $1 ORDER BY role_id, member_id",
        project_id,
    )
    return ProjectFacts(
        project_id=project_id,
        coordinator_workspace_id=row["coordinator_workspace_id"],
        coordinator_member_id=row["coordinator_member_id"],
        open_call=row["open_call"],
        capabilities=tuple(row["capabilities"]),
        status=row["status"],
        participants=tuple(
            Participant(p["role_id"], p["member_id"], p["workspace_id"], p["status"])
            for p in participants
        ),
    )


async def _store_facts(
    connection: asyncpg.Connection, before: ProjectFacts | None, recorded: RecordedEvent
) -> None:
    after = evolve_project(before, recorded.event)
    if after is not None and after != before:
        await connection.execute(
            "INSERT INTO audience_projects (project_id, coordinator_workspace_id, "
            "coordinator_member_id, open_call, capabilities, status) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (project_id) DO UPDATE SET "
            "coordinator_workspace_id = EXCLUDED.coordinator_workspace_id, "
            "coordinator_member_id = EXCLUDED.coordinator_member_id, "
            "open_call = EXCLUDED.open_call, capabilities = EXCLUDED.capabilities, "
            "status = EXCLUDED.status",
            after.project_id,
            after.coordinator_workspace_id,
            after.coordinator_member_id,
            after.open_call,
            list(after.capabilities),
            after.status,
        )
        if before is None or after.participants != before.participants:
            await connection.execute(
                "DELETE FROM audience_participants WHERE project_id = $1", after.project_id
            )
            await connection.executemany(
                "INSERT INTO audience_participants "
                "(project_id, role_id, member_id, workspace_id, status) "
                "VALUES ($1, $2, $3, $4, $5)",
                [
                    (after.project_id, p.role_id, p.member_id, p.workspace_id, p.status)
                    for p in after.participants
                ],
            )
    if (declared := declared_capabilities(recorded.event)) is not None:
        member_id, workspace_id, capabilities = declared
        await connection.execute(
            "INSERT INTO audience_members (member_id, workspace_id, capabilities) "
            "VALUES ($1, $2, $3) ON CONFLICT (member_id) DO UPDATE SET "
            "workspace_id = EXCLUDED.workspace_id, capabilities = EXCLUDED.capabilities",
            member_id,
            workspace_id,
            list(capabilities),
        )


async def _record_effects(
    connection: asyncpg.Connection, recorded: RecordedEvent, recipients: tuple[Recipient, ...]
) -> None:
    envelope, event = recorded.envelope, recorded.event
    await connection.execute(
        "INSERT INTO notification_events "
        "(event_id, sequence, type, ordering_key, body, headers, recorded_at) "
        "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7) ON CONFLICT DO NOTHING",
        envelope.event_id,
        recorded.sequence,
        envelope.type,
        ordering_key(event, envelope),
        encode_body(PendingEvent(envelope, event)),
        json.dumps(encode_headers(envelope)),
        recorded.recorded_at,
    )
    await connection.executemany(
        "INSERT INTO notifications (event_id, workspace_id, sequence, type, members, concerns) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        [
            (
                envelope.event_id,
                recipient.workspace_id,
                recorded.sequence,
                envelope.type,
                list(recipient.members),
                list(recipient.concerns),
            )
            for recipient in recipients
        ],
    )
    # One delivery per live endpoint of a concerned workspace that wants this type and was
    # registered before the event was processed. The id is derived, so it is stable.
    await connection.execute(
        "INSERT INTO webhook_deliveries "
        "(delivery_id, event_id, endpoint_id, workspace_id, sequence, type, ordering_key) "
        "SELECT md5($1 || ':' || e.endpoint_id), $1, e.endpoint_id, e.workspace_id, $2, $3, $4 "
        "FROM webhook_endpoints e "
        "WHERE e.workspace_id = ANY($5::text[]) AND e.removed_at IS NULL "
        "AND e.registered_after_seq < $2 "
        "AND (cardinality(e.event_types) = 0 OR $3 = ANY(e.event_types) "
        "     OR $6 = ANY(e.event_types)) "
        "ON CONFLICT (event_id, endpoint_id) DO NOTHING",
        envelope.event_id,
        recorded.sequence,
        envelope.type,
        ordering_key(event, envelope),
        [recipient.workspace_id for recipient in recipients],
        f"{envelope.aggregate}.*",
    )
