"""The capability directory: one ordered projection of the whole log into PostgreSQL.

Workspace, member, project and matching events are folded in log order into the in-memory
`Network` (the index proposals are computed from) and written to the directory schema in
the ProjectionRunner's transaction, together with the outbox rows (in the service schema)
of the proposals their triggers call for. So a proposal is computed from exactly the
directory at its trigger's position, and the proposal, the directory and the checkpoint
commit together or not at all. A rebuild (`infra.projections.rebuilding`) computes no
proposals: the directory is rebuilt, nothing is proposed again.

The memory follows the database, never the other way round: each batch first compares the
directory position in the transaction with the memory's; after a failed batch, a rolled
back commit or another process moving the projection, they differ and the memory is
reloaded from the tables (in the same transaction, so it sees exactly the committed state).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime

import asyncpg
import structlog

from contracts.envelope import Envelope, PendingEvent, RecordedEvent
from contracts.matching import CandidatesProposed
from contracts.projects import RoleSpec
from contracts.wire import encode_body
from infra import metrics
from infra.postgres import quote_identifier
from infra.projections import rebuilding
from services.matching.index import Member, Workspace
from services.matching.network import HistoryEntry, Invitation, Network, Project, Trigger
from services.matching.scoring import WeightsLike
from services.matching.taxonomy import Taxonomy

log = structlog.get_logger(__name__)

ACTOR = "service:matching"
OUTBOX_KEY = "outbox:"
# Proposal event ids are derived from their trigger: one proposal per trigger, ever.
PROPOSAL_NAMESPACE = uuid.UUID("6f1c2a59-4d7e-5b8a-9c3f-0a1b2c3d4e5f")

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS directory_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position bigint NOT NULL DEFAULT 0,  -- sequence of the last event folded
    clock timestamptz                     -- the log clock: the latest occurred_at folded
);
INSERT INTO directory_state (singleton, position) VALUES (true, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS workspaces (
    workspace_id text PRIMARY KEY,
    name text NOT NULL,
    city text NOT NULL,
    country text NOT NULL,
    lat double precision NOT NULL,
    long double precision NOT NULL,
    languages text[] NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    member_id text PRIMARY KEY,
    workspace_id text NOT NULL,
    name text NOT NULL,
    capabilities jsonb NOT NULL,
    equipment text[] NOT NULL,
    weekly_hours double precision NOT NULL,
    languages text[] NOT NULL,
    delivered integer NOT NULL DEFAULT 0,
    withdrawn integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS members_by_workspace ON members (workspace_id);
CREATE TABLE IF NOT EXISTS active_projects (
    project_id text PRIMARY KEY,
    state jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS proposal_history (
    project_id text NOT NULL,
    role_id text NOT NULL,
    member_id text NOT NULL,
    listed boolean NOT NULL,
    chosen boolean NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (project_id, role_id, member_id)
);
CREATE INDEX IF NOT EXISTS proposal_history_by_member ON proposal_history (member_id);
"""


def proposal_event_id(trigger_event_id: str) -> str:
    return uuid.uuid5(PROPOSAL_NAMESPACE, f"candidates:{trigger_event_id}").hex


def proposal_pending_event(trigger: Trigger, proposal: CandidatesProposed) -> PendingEvent:
    """The proposal with its envelope: it answers the trigger, in the trigger's scope."""
    source = trigger.envelope
    envelope = Envelope(
        event_id=proposal_event_id(trigger.event_id),
        type=proposal.type,
        schema_version=type(proposal).schema_version,
        aggregate="matching",
        aggregate_id=proposal.project_id,
        occurred_at=source.occurred_at,  # decided "at" its trigger: replays give equal events
        actor=ACTOR,
        workspace_scope=source.workspace_scope,
        correlation_id=source.correlation_id,
        causation_id=trigger.event_id,
        traceparent=source.traceparent,
    )
    return PendingEvent(envelope, proposal)


class DirectoryProjection:
    name = "matching_directory"
    version = 1
    subject_filter = None  # the whole log, in order

    def __init__(
        self,
        taxonomy: Taxonomy,
        weights: WeightsLike,
        outbox_schema: str,
        *,
        on_proposals: Callable[[list[PendingEvent]], None] | None = None,
        on_loaded: Callable[[Network], None] | None = None,
    ) -> None:
        self.taxonomy = taxonomy
        self.weights = weights
        self.outbox_table = f"{quote_identifier(outbox_schema)}.outbox"
        self.on_proposals = on_proposals  # proposals were committed to the outbox
        self.on_loaded = on_loaded  # the directory was (re)loaded into memory
        self.network: Network | None = None
        self._trusted = False  # memory == tables as of network.position
        # proposals of the batch being applied, by trigger id; after_commit hands on those
        # the runner reports committed (`outbox:<trigger id>` keys)
        self._fresh: dict[str, tuple[int, PendingEvent]] = {}

    async def setup(self, connection: asyncpg.Connection) -> None:
        await connection.execute(SCHEMA_SQL)

    async def warm(self, connection: asyncpg.Connection) -> Network:
        """Load the in-memory directory from the tables (at start, or after a failure)."""
        self.network = await load_network(connection, self.taxonomy, self.weights)
        self._trusted = True
        log.info("matching.directory_loaded", **self.network.stats())
        if self.on_loaded is not None:
            self.on_loaded(self.network)
        return self.network

    async def apply(
        self, connection: asyncpg.Connection, events: list[RecordedEvent]
    ) -> Iterable[str]:
        position = await connection.fetchval("SELECT position FROM directory_state")
        if not self._trusted or self.network is None or self.network.position != position:
            log.info(
                "matching.directory_reloading",
                memory_position=self.network.position if self.network else None,
                table_position=position,
            )
            await self.warm(connection)
        network = self.network
        assert network is not None
        self._trusted = False  # until this batch is folded and written
        replaying = rebuilding.get()
        outbox = []
        for recorded in events:
            trigger = network.apply(recorded)
            if trigger is not None and not replaying:
                pending = self._propose(network, trigger)
                if pending is not None:
                    outbox.append((trigger, pending))
        await write_changes(connection, network)
        if outbox:
            await connection.executemany(
                f"INSERT INTO {self.outbox_table} (trigger_event_id, trigger_sequence, "
                "trigger_type, project_id, event_id, body) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (trigger_event_id) DO NOTHING",
                [
                    (
                        trigger.event_id,
                        trigger.sequence,
                        trigger.type,
                        trigger.project_id,
                        pending.envelope.event_id,
                        encode_body(pending),
                    )
                    for trigger, pending in outbox
                ],
            )
        self._trusted = True
        for trigger, pending in outbox:
            self._fresh[trigger.event_id] = (trigger.sequence, pending)
        return {f"{OUTBOX_KEY}{trigger.event_id}" for trigger, _ in outbox}

    def _propose(self, network: Network, trigger: Trigger) -> PendingEvent | None:
        with structlog.contextvars.bound_contextvars(
            correlation_id=trigger.envelope.correlation_id,
            causation_id=trigger.event_id,
            project_id=trigger.project_id,
        ):
            started = time.perf_counter()
            proposal = network.propose(trigger)
            metrics.MATCHING_PROPOSE_SECONDS.observe(time.perf_counter() - started)
            if proposal is None:
                log.info("matching.nothing_to_propose", trigger=trigger.type)
                return None
            empty = any(p.no_candidates_reason for p in proposal.proposals)
            metrics.MATCHING_PROPOSALS.inc(
                trigger=trigger.type, outcome="some_role_empty" if empty else "candidates"
            )
            log.info(
                "matching.proposed",
                trigger=trigger.type,
                trigger_sequence=trigger.sequence,
                roles={p.role_id: len(p.candidates) for p in proposal.proposals},
                without_candidates=[
                    p.role_id for p in proposal.proposals if p.no_candidates_reason
                ],
            )
            return proposal_pending_event(trigger, proposal)

    async def after_commit(self, changed: set[str]) -> None:
        committed = sorted(
            self._fresh[key[len(OUTBOX_KEY) :]]
            for key in changed
            if key.startswith(OUTBOX_KEY) and key[len(OUTBOX_KEY) :] in self._fresh
        )
        self._fresh.clear()  # also what a rolled back attempt left
        if committed and self.on_proposals is not None:
            self.on_proposals([pending for _, pending in committed])


# -- the durable copy ------------------------------------------------------------------------


def _project_state(project: Project) -> str:
    return json.dumps(
        {
            "coordinator_member_id": project.coordinator_member_id,
            "coordinator_workspace_id": project.coordinator_workspace_id,
            "status": project.status,
            "due": project.due.isoformat(),
            "delivery": list(project.delivery),
            "roles": [role.model_dump(mode="json") for role in project.roles],
            "invitations": {
                invitation_id: [i.role_id, i.member_id, i.workspace_id, i.status]
                for invitation_id, i in project.invitations.items()
            },
        }
    )


def _project_from_state(project_id: str, state: dict) -> Project:
    return Project(
        project_id=project_id,
        coordinator_member_id=state["coordinator_member_id"],
        coordinator_workspace_id=state["coordinator_workspace_id"],
        status=state["status"],
        due=datetime.fromisoformat(state["due"]),
        delivery=(state["delivery"][0], state["delivery"][1]),
        roles=tuple(RoleSpec.model_validate(role) for role in state["roles"]),
        invitations={
            invitation_id: Invitation(*fields)
            for invitation_id, fields in state["invitations"].items()
        },
    )


async def write_changes(connection: asyncpg.Connection, network: Network) -> None:
    """Write what changed in memory since the last call, and the directory position."""
    changes = network.take_changes()
    spaces = [network.workspaces[k] for k in sorted(changes.workspaces)]
    if spaces:
        await connection.executemany(
            "INSERT INTO workspaces (workspace_id, name, city, country, lat, long, languages) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (workspace_id) DO UPDATE SET "
            "name = $2, city = $3, country = $4, lat = $5, long = $6, languages = $7",
            [
                (s.workspace_id, s.name, s.city, s.country, *s.location, sorted(s.languages))
                for s in spaces
            ],
        )
    members = [network.members[k] for k in sorted(changes.members) if k in network.members]
    if members:
        await connection.executemany(
            "INSERT INTO members (member_id, workspace_id, name, capabilities, equipment, "
            "weekly_hours, languages, delivered, withdrawn) "
            "VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9) ON CONFLICT (member_id) DO UPDATE "
            "SET workspace_id = $2, name = $3, capabilities = $4::jsonb, equipment = $5, "
            "weekly_hours = $6, languages = $7, delivered = $8, withdrawn = $9",
            [
                (
                    m.member_id,
                    m.workspace_id,
                    m.name,
                    json.dumps(m.capabilities, sort_keys=True),
                    list(m.equipment),
                    m.weekly_hours,
                    sorted(m.languages),
                    m.delivered,
                    m.withdrawn,
                )
                for m in members
            ],
        )
    active = sorted(k for k in changes.projects if k in network.projects)
    closed = sorted(k for k in changes.projects if k not in network.projects)
    if active:
        await connection.executemany(
            "INSERT INTO active_projects (project_id, state) VALUES ($1, $2::jsonb) "
            "ON CONFLICT (project_id) DO UPDATE SET state = $2::jsonb",
            [(k, _project_state(network.projects[k])) for k in active],
        )
    if closed:
        await connection.execute(
            "DELETE FROM active_projects WHERE project_id = ANY($1::text[])", closed
        )
    kept = sorted(k for k in changes.history if k in network.history)
    dropped = sorted(k for k in changes.history if k not in network.history)
    if kept:
        await connection.executemany(
            "INSERT INTO proposal_history (project_id, role_id, member_id, listed, chosen, at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (project_id, role_id, member_id) "
            "DO UPDATE SET listed = $4, chosen = $5, at = $6",
            [
                (
                    *key,
                    network.history[key].listed,
                    network.history[key].chosen,
                    network.history[key].at,
                )
                for key in kept
            ],
        )
    if dropped:
        await connection.executemany(
            "DELETE FROM proposal_history WHERE project_id = $1 AND role_id = $2 "
            "AND member_id = $3",
            dropped,
        )
    await connection.execute(
        "UPDATE directory_state SET position = $1, clock = $2", network.position, network.clock
    )


async def load_network(
    connection: asyncpg.Connection, taxonomy: Taxonomy, weights: WeightsLike
) -> Network:
    network = Network(taxonomy, weights)
    state = await connection.fetchrow("SELECT position, clock FROM directory_state")
    network.position, network.clock = state["position"], state["clock"]
    for row in await connection.fetch("SELECT * FROM workspaces"):
        network.workspaces[row["workspace_id"]] = Workspace(
            row["workspace_id"],
            row["name"],
            row["city"],
            row["country"],
            (row["lat"], row["long"]),
            network.intern(row["languages"]),
        )
    network.restore_history(
        (
            (row["project_id"], row["role_id"], row["member_id"]),
            HistoryEntry(row["listed"], row["chosen"], row["at"]),
        )
        for row in await connection.fetch("SELECT * FROM proposal_history")
    )
    for row in await connection.fetch("SELECT * FROM members ORDER BY member_id"):
        network.add_member(
            Member(
                member_id=row["member_id"],
                workspace_id=row["workspace_id"],
                name=row["name"],
                capabilities=json.loads(row["capabilities"]),
                equipment=tuple(row["equipment"]),
                weekly_hours=row["weekly_hours"],
                languages=network.intern(row["languages"]),
                delivered=row["delivered"],
                withdrawn=row["withdrawn"],
            )
        )
    for row in await connection.fetch("SELECT project_id, state FROM active_projects"):
        network.restore_project(_project_from_state(row["project_id"], json.loads(row["state"])))
    network.take_changes()
    return network
