"""Reads of the workspace view (schema `projects_view`), shaped for the API and the page."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

TIMELINE_LENGTH = 50


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def project_rows(connection: asyncpg.Connection, where: str, *args) -> list[dict]:
    """Projects matching `where`, with roles, seats, partners (named, with their workspace,
    city and country), the latest matching proposal and the recent timeline."""
    records = await connection.fetch(
        "SELECT p.*, cm.name AS coordinator_name, cw.name AS coordinator_workspace_name,"
        " cw.city AS coordinator_city, cw.country AS coordinator_country"
        " FROM projects p"
        " LEFT JOIN members cm ON cm.member_id = p.coordinator_member_id"
        " LEFT JOIN workspaces cw ON cw.workspace_id = p.coordinator_workspace_id"
        f" WHERE {where} ORDER BY p.last_event_at DESC, p.project_id",
        *args,
    )
    if not records:
        return []
    ids = [record["project_id"] for record in records]
    invitations = await connection.fetch(
        "SELECT i.*, m.name AS member_name, w.name AS workspace_name, w.city, w.country"
        " FROM invitations i"
        " LEFT JOIN members m ON m.member_id = i.member_id"
        " LEFT JOIN workspaces w ON w.workspace_id = i.workspace_id"
        " WHERE i.project_id = any($1::text[]) ORDER BY i.position",
        ids,
    )
    timeline = await connection.fetch(  # the newest entries of each, read backwards by key
        "SELECT t.* FROM unnest($1::text[]) AS ids(project_id) CROSS JOIN LATERAL"
        " (SELECT * FROM timeline WHERE project_id = ids.project_id"
        "  ORDER BY sequence DESC LIMIT $2) t ORDER BY t.project_id, t.sequence",
        ids,
        TIMELINE_LENGTH,
    )
    seats_by_project: dict[str, list[dict]] = {}
    for item in invitations:
        seats_by_project.setdefault(item["project_id"], []).append(
            {
                "invitation_id": item["invitation_id"],
                "role_id": item["role_id"],
                "member_id": item["member_id"],
                "member_name": item["member_name"],
                "workspace_id": item["workspace_id"],
                "workspace_name": item["workspace_name"],
                "city": item["city"],
                "country": item["country"],
                "status": item["status"],
                "expires_at": _iso(item["expires_at"]),
            }
        )
    timeline_by_project: dict[str, list[dict]] = {}
    for item in timeline:
        timeline_by_project.setdefault(item["project_id"], []).append(
            {
                "sequence": item["sequence"],
                "occurred_at": _iso(item["occurred_at"]),
                "type": item["type"],
                "actor": item["actor"],
                "summary": item["summary"],
            }
        )
    return [
        _project_document(
            record,
            seats_by_project.get(record["project_id"], []),
            timeline_by_project.get(record["project_id"], []),
        )
        for record in records
    ]


def _project_document(
    record: asyncpg.Record, invitations: list[dict], timeline: list[dict]
) -> dict:
    roles = []
    for role in json.loads(record["roles"]):
        held = [i for i in invitations if i["role_id"] == role["role_id"]]
        accepted = [i for i in held if i["status"] == "accepted"]
        invited = [i for i in held if i["status"] == "pending"]
        roles.append(
            {
                **role,
                "accepted": len(accepted),
                "invited": len(invited),
                "open": role["seats"] - len(accepted),
                "seats_detail": [i for i in held if i["status"] in ("accepted", "pending")],
            }
        )
    partners = [i for i in invitations if i["status"] == "accepted"]
    return {
        "project_id": record["project_id"],
        "title": record["title"],
        "description": record["description"],
        "deliverable": record["deliverable"],
        "delivery_location": json.loads(record["delivery"]),
        "due": _iso(record["due"]),
        "open_call": record["open_call"],
        "status": record["status"],
        "version": record["version"],
        "coordinator": {
            "member_id": record["coordinator_member_id"],
            "name": record["coordinator_name"],
            "workspace_id": record["coordinator_workspace_id"],
            "workspace_name": record["coordinator_workspace_name"],
            "city": record["coordinator_city"],
            "country": record["coordinator_country"],
        },
        "scope": list(record["scope"]),
        "roles": roles,
        "partners": partners,
        "invitations": invitations,
        "proposals": json.loads(record["proposals"]) if record["proposals"] else None,
        "proposed_at": _iso(record["proposed_at"]),
        "last_change": _iso(record["last_event_at"]),
        "last_event_type": record["last_event_type"],
        "timeline": timeline,
    }


async def projects_by_id(connection: asyncpg.Connection, project_ids: list[str]) -> list[dict]:
    return await project_rows(connection, "p.project_id = any($1::text[])", project_ids)


async def project(connection: asyncpg.Connection, project_id: str) -> dict | None:
    rows = await project_rows(connection, "p.project_id = $1", project_id)
    return rows[0] if rows else None


async def workspace(connection: asyncpg.Connection, workspace_id: str) -> dict | None:
    record = await connection.fetchrow(
        "SELECT w.*, (SELECT count(*) FROM members m WHERE m.workspace_id = w.workspace_id)"
        " AS members FROM workspaces w WHERE workspace_id = $1",
        workspace_id,
    )
    if record is None:
        return None
    return {
        "workspace_id": record["workspace_id"],
        "name": record["name"],
        "city": record["city"],
        "country": record["country"],
        "location": {"lat": record["lat"], "long": record["long"]},
        "languages": list(record["languages"]),
        "timezone": record["timezone"],
        "members": record["members"],
    }


async def workspace_view(connection: asyncpg.Connection, workspace_id: str) -> dict | None:
    """What a workspace sees live: the joint projects it coordinates or takes part in."""
    about = await workspace(connection, workspace_id)
    if about is None:
        return None
    projects = await project_rows(connection, "p.scope @> ARRAY[$1::text]", workspace_id)
    for item in projects:
        item["relation"] = relation(item, workspace_id)
    return {"workspace": about, "projects": projects}


def relation(item: dict, workspace_id: str) -> str:
    """How the workspace takes part in the project (a project document of `project_rows`)."""
    if item["coordinator"]["workspace_id"] == workspace_id:
        return "coordinator"
    statuses = {i["status"] for i in item["invitations"] if i["workspace_id"] == workspace_id}
    if "accepted" in statuses:
        return "partner"
    if "pending" in statuses:
        return "invited"
    return "former"


async def open_calls(connection: asyncpg.Connection) -> list[dict]:
    """Projects published to the whole network and still looking for partners."""
    return await project_rows(connection, "p.open_call AND p.status = 'proposed'")


async def members_of(connection: asyncpg.Connection, workspace_id: str) -> list[dict]:
    records = await connection.fetch(
        "SELECT * FROM members WHERE workspace_id = $1 ORDER BY name", workspace_id
    )
    return [
        {
            "member_id": r["member_id"],
            "name": r["name"],
            "kind": r["kind"],
            "capabilities": json.loads(r["capabilities"]),
            "equipment": json.loads(r["equipment"]),
            "weekly_capacity_hours": r["weekly_capacity_hours"],
            "languages": list(r["languages"]),
            "presentation": r["presentation"],
        }
        for r in records
    ]


async def expired_invitations(
    connection: asyncpg.Connection, now: datetime, limit: int = 500
) -> list[tuple[str, str]]:
    records = await connection.fetch(
        "SELECT project_id, invitation_id FROM invitations"
        " WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
        now,
        limit,
    )
    return [(r["project_id"], r["invitation_id"]) for r in records]
