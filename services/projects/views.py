"""The workspace live view: a projection of the log into PostgreSQL (schema `projects_view`).

Per project one row (status, roles, invitations, scope, the latest matching proposal),
its invitations, and its timeline; plus workspaces and members, to name partners with their
workspace, city and country. Batches are folded in memory with the domain's own `evolve`
and written with a handful of statements; the rows of large batches (a rebuild, a catch-up)
go in with COPY, so rebuilds run at log speed.

After each commit, a core-NATS signal `<root>.live.<workspace_id>` tells live clients that
the view of that workspace changed (`<root>.live._network` for the open calls list), naming
the projects: `{"changed": true, "projects": [...]}` (services/projects/live.py pushes just
those).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from nats.aio.client import Client as NatsClient

from contracts.envelope import RecordedEvent
from contracts.matching import CandidatesProposed
from contracts.projects import ProjectProposed, RoleSpec
from contracts.subjects import SubjectScheme
from contracts.workspaces import (
    MemberCapabilitiesDeclared,
    MemberCapacityChanged,
    MemberJoined,
    WorkspaceRegistered,
)
from services.projects import domain
from services.projects.timeline import describe

NETWORK = "_network"  # live-signal key of the network-wide open calls

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS workspaces (
    workspace_id text PRIMARY KEY,
    name text NOT NULL,
    city text NOT NULL,
    country text NOT NULL,
    lat double precision NOT NULL,
    long double precision NOT NULL,
    languages text[] NOT NULL,
    timezone text NOT NULL,
    registered_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    member_id text PRIMARY KEY,
    workspace_id text NOT NULL,
    name text NOT NULL,
    kind text NOT NULL,
    capabilities jsonb NOT NULL,
    equipment jsonb NOT NULL,
    weekly_capacity_hours double precision NOT NULL,
    languages text[] NOT NULL,
    presentation text NOT NULL,
    joined_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS members_by_workspace ON members (workspace_id);
CREATE TABLE IF NOT EXISTS projects (
    project_id text PRIMARY KEY,
    title text NOT NULL,
    description text NOT NULL,
    deliverable text NOT NULL,
    delivery jsonb NOT NULL,
    due timestamptz NOT NULL,
    open_call boolean NOT NULL,
    status text NOT NULL,
    coordinator_member_id text NOT NULL,
    coordinator_workspace_id text NOT NULL,
    roles jsonb NOT NULL,
    scope text[] NOT NULL,
    proposals jsonb,
    version bigint NOT NULL,
    proposed_at timestamptz NOT NULL,
    last_event_at timestamptz NOT NULL,
    last_event_type text NOT NULL
);
CREATE INDEX IF NOT EXISTS projects_by_scope ON projects USING gin (scope);
CREATE INDEX IF NOT EXISTS projects_open ON projects (status) WHERE open_call;
CREATE TABLE IF NOT EXISTS invitations (
    invitation_id text PRIMARY KEY,
    project_id text NOT NULL,
    role_id text NOT NULL,
    member_id text NOT NULL,
    workspace_id text NOT NULL,
    status text NOT NULL,
    expires_at timestamptz,
    position integer NOT NULL
);
CREATE INDEX IF NOT EXISTS invitations_by_project ON invitations (project_id);
CREATE INDEX IF NOT EXISTS invitations_pending ON invitations (expires_at) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS timeline (
    project_id text NOT NULL,
    sequence bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    type text NOT NULL,
    actor text NOT NULL,
    summary text NOT NULL,
    PRIMARY KEY (project_id, sequence)
);
"""


@dataclass(frozen=True, slots=True)
class ProjectRow:
    state: domain.Project
    description: str
    deliverable: str
    delivery: dict
    proposed_at: datetime
    version: int
    last_event_at: datetime
    last_event_type: str
    proposals: dict | None = None


def evolve_row(row: ProjectRow | None, recorded: RecordedEvent) -> ProjectRow | None:
    """The view's project row after one project or matching event (pure)."""
    event = recorded.event
    occurred_at = recorded.envelope.occurred_at
    if isinstance(event, ProjectProposed):
        return ProjectRow(
            state=domain.evolve_project(domain.Project(project_id=event.project_id), event),
            description=event.description,
            deliverable=event.deliverable,
            delivery=event.delivery_location.model_dump(mode="json"),
            proposed_at=occurred_at,
            version=recorded.sequence,
            last_event_at=occurred_at,
            last_event_type=recorded.type,
        )
    if row is None:  # a matching proposal for a project we never saw, or a broken log
        return None
    if isinstance(event, CandidatesProposed):
        state, proposals = row.state, event.data()
    else:
        state, proposals = domain.evolve_project(row.state, event), row.proposals
    # Built field by field: dataclasses.replace costs more than the fold itself.
    return ProjectRow(
        state,
        row.description,
        row.deliverable,
        row.delivery,
        row.proposed_at,
        recorded.sequence,
        occurred_at,
        recorded.type,
        proposals,
    )


class WorkspaceViewProjection:
    name = "workspace_view"
    version = 1
    subject_filter: str | None = None

    def __init__(self, nats: NatsClient | None = None, scheme: SubjectScheme | None = None):
        self.nats = nats
        self.scheme = scheme or SubjectScheme()

    async def setup(self, connection: asyncpg.Connection) -> None:
        await connection.execute(SCHEMA_SQL)

    async def apply(self, connection: asyncpg.Connection, events: list[RecordedEvent]) -> set[str]:
        touched = {
            e.envelope.aggregate_id
            for e in events
            if e.envelope.aggregate in ("project", "matching")
        }
        rows = await self._load_rows(connection, touched) if touched else {}
        stored = set(rows)
        before_scope = {pid: _audience(row) for pid, row in rows.items()}
        timeline = []
        for recorded in events:
            aggregate = recorded.envelope.aggregate
            if aggregate in ("project", "matching"):
                project_id = recorded.envelope.aggregate_id
                row = evolve_row(rows.get(project_id), recorded)
                if row is None:
                    raise ValueError(f"{recorded.type} for unknown project {project_id}")
                rows[project_id] = row
                timeline.append(_timeline_row(project_id, recorded))
            elif aggregate == "workspace":
                await self._apply_workspace(connection, recorded)
            elif aggregate == "member":
                await self._apply_member(connection, recorded)
        changed: set[str] = set()  # "<workspace or NETWORK>/<project_id>"
        for project_id in touched:
            audience = before_scope.get(project_id, set()) | _audience(rows[project_id])
            changed |= {f"{key}/{project_id}" for key in audience}
        await self._store_rows(connection, [rows[pid] for pid in touched], stored)
        await _insert(connection, TIMELINE, timeline)
        return changed

    async def after_commit(self, changed: set[str]) -> None:
        if self.nats is None:
            return
        named: dict[str, list[str]] = {}
        for key in sorted(changed):
            workspace_id, _, project_id = key.partition("/")
            named.setdefault(workspace_id, []).append(project_id)
        for workspace_id, project_ids in named.items():
            signal = json.dumps({"changed": True, "projects": project_ids}).encode()
            await self.nats.publish(self.scheme.live(workspace_id), signal)

    async def _load_rows(
        self, connection: asyncpg.Connection, project_ids: set[str]
    ) -> dict[str, ProjectRow]:
        found = await connection.fetch(
            "SELECT * FROM projects WHERE project_id = any($1::text[])", list(project_ids)
        )
        invitations = await connection.fetch(
            "SELECT * FROM invitations WHERE project_id = any($1::text[]) ORDER BY position",
            list(project_ids),
        )
        by_project: dict[str, list[domain.Invitation]] = {}
        for item in invitations:
            by_project.setdefault(item["project_id"], []).append(
                domain.Invitation(
                    item["invitation_id"],
                    item["role_id"],
                    item["member_id"],
                    item["workspace_id"],
                    item["expires_at"],
                    item["status"],
                )
            )
        rows = {}
        for record in found:
            project_id = record["project_id"]
            state = domain.Project(
                project_id=project_id,
                status=record["status"],
                coordinator_member_id=record["coordinator_member_id"],
                coordinator_workspace_id=record["coordinator_workspace_id"],
                title=record["title"],
                due=record["due"],
                open_call=record["open_call"],
                roles=tuple(RoleSpec.model_validate(r) for r in json.loads(record["roles"])),
                invitations=tuple(by_project.get(project_id, ())),
            )
            proposals = record["proposals"]
            rows[project_id] = ProjectRow(
                state=state,
                description=record["description"],
                deliverable=record["deliverable"],
                delivery=json.loads(record["delivery"]),
                proposed_at=record["proposed_at"],
                version=record["version"],
                last_event_at=record["last_event_at"],
                last_event_type=record["last_event_type"],
                proposals=json.loads(proposals) if proposals else None,
            )
        return rows

    async def _store_rows(
        self, connection: asyncpg.Connection, rows: list[ProjectRow], stored: set[str]
    ) -> None:
        """Write the touched projects and their invitations. `stored`: those already in the
        table, updated in place; the others are new, inserted with COPY when many."""
        new, old = [], []
        for row in rows:
            (old if row.state.project_id in stored else new).append(_project_record(row))
        await _insert(connection, PROJECTS, new)
        if old:
            await connection.executemany(PROJECTS.insert, old)
            await connection.execute(
                "DELETE FROM invitations WHERE project_id = any($1::text[])",
                [record[0] for record in old],
            )
        await _insert(
            connection,
            INVITATIONS,
            [
                (
                    i.invitation_id,
                    row.state.project_id,
                    i.role_id,
                    i.member_id,
                    i.workspace_id,
                    i.status,
                    i.expires_at,
                    position,
                )
                for row in rows
                for position, i in enumerate(row.state.invitations)
            ],
        )

    async def _apply_workspace(
        self, connection: asyncpg.Connection, recorded: RecordedEvent
    ) -> None:
        event = recorded.event
        if not isinstance(event, WorkspaceRegistered):
            return
        await connection.execute(
            "INSERT INTO workspaces (workspace_id, name, city, country, lat, long, languages,"
            " timezone, registered_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (workspace_id) DO NOTHING",
            event.workspace_id,
            event.name,
            event.city,
            event.country,
            event.location.lat,
            event.location.long,
            list(event.languages),
            event.timezone,
            recorded.envelope.occurred_at,
        )

    async def _apply_member(self, connection: asyncpg.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        if isinstance(event, MemberJoined):
            await connection.execute(
                "INSERT INTO members (member_id, workspace_id, name, kind, capabilities,"
                " equipment, weekly_capacity_hours, languages, presentation, joined_at) VALUES"
                " ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10)"
                " ON CONFLICT (member_id) DO NOTHING",
                event.member_id,
                event.workspace_id,
                event.name,
                event.kind,
                json.dumps([c.model_dump() for c in event.capabilities]),
                json.dumps(list(event.equipment)),
                event.weekly_capacity.hasNumericalValue,
                list(event.languages),
                event.presentation,
                recorded.envelope.occurred_at,
            )
        elif isinstance(event, MemberCapabilitiesDeclared):
            await connection.execute(
                "UPDATE members SET capabilities = $2::jsonb, equipment = $3::jsonb"
                " WHERE member_id = $1",
                event.member_id,
                json.dumps([c.model_dump() for c in event.capabilities]),
                json.dumps(list(event.equipment)),
            )
        elif isinstance(event, MemberCapacityChanged):
            await connection.execute(
                "UPDATE members SET weekly_capacity_hours = $2 WHERE member_id = $1",
                event.member_id,
                event.weekly_capacity.hasNumericalValue,
            )


@dataclass(frozen=True, slots=True)
class Table:
    """How rows go into one of the view's tables: `insert` row by row, or COPY."""

    name: str
    columns: tuple[str, ...]
    insert: str  # parameters in the order of `columns`


PROJECTS = Table(
    "projects",
    (
        "project_id",
        "title",
        "description",
        "deliverable",
        "delivery",
        "due",
        "open_call",
        "status",
        "coordinator_member_id",
        "coordinator_workspace_id",
        "roles",
        "scope",
        "proposals",
        "version",
        "proposed_at",
        "last_event_at",
        "last_event_type",
    ),
    insert="INSERT INTO projects (project_id, title, description, deliverable, delivery, due,"
    " open_call, status, coordinator_member_id, coordinator_workspace_id, roles, scope,"
    " proposals, version, proposed_at, last_event_at, last_event_type) VALUES"
    " ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11::jsonb, $12, $13::jsonb, $14,"
    " $15, $16, $17) ON CONFLICT (project_id) DO UPDATE SET status = excluded.status,"
    " roles = excluded.roles, scope = excluded.scope, proposals = excluded.proposals,"
    " version = excluded.version, last_event_at = excluded.last_event_at,"
    " last_event_type = excluded.last_event_type",
)
INVITATIONS = Table(
    "invitations",
    (
        "invitation_id",
        "project_id",
        "role_id",
        "member_id",
        "workspace_id",
        "status",
        "expires_at",
        "position",
    ),
    insert="INSERT INTO invitations (invitation_id, project_id, role_id, member_id,"
    " workspace_id, status, expires_at, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
)
TIMELINE = Table(
    "timeline",
    ("project_id", "sequence", "occurred_at", "recorded_at", "type", "actor", "summary"),
    insert="INSERT INTO timeline (project_id, sequence, occurred_at, recorded_at, type,"
    " actor, summary) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
)

# From this many rows, a table is written with one COPY (one round trip, binary rows)
# rather than `executemany`. A COPY that hits an existing key fails the batch, and the
# runner then applies its events one by one, through `insert` (which skips duplicates).
COPY_FROM_ROWS = 32


async def _insert(connection: asyncpg.Connection, table: Table, records: list[tuple]) -> None:
    if len(records) >= COPY_FROM_ROWS:
        await connection.copy_records_to_table(table.name, records=records, columns=table.columns)
    elif records:
        await connection.executemany(table.insert, records)


def _project_record(row: ProjectRow) -> tuple:
    state = row.state
    return (
        state.project_id,
        state.title,
        row.description,
        row.deliverable,
        json.dumps(row.delivery),
        state.due,
        state.open_call,
        state.status,
        state.coordinator_member_id,
        state.coordinator_workspace_id,
        json.dumps([r.model_dump(mode="json") for r in state.roles]),
        list(state.workspace_scope),
        json.dumps(row.proposals) if row.proposals is not None else None,
        row.version,
        row.proposed_at,
        row.last_event_at,
        row.last_event_type,
    )


def _audience(row: ProjectRow) -> set[str]:
    """Whose live view shows this project: its scope, and everyone while it is an open call."""
    audience = set(row.state.workspace_scope)
    if row.state.open_call and row.state.status == "proposed":
        audience.add(NETWORK)
    return audience


def _timeline_row(project_id: str, recorded: RecordedEvent) -> tuple:
    return (
        project_id,
        recorded.sequence,
        recorded.envelope.occurred_at,
        recorded.recorded_at,
        recorded.type,
        recorded.envelope.actor,
        describe(recorded.event),
    )
