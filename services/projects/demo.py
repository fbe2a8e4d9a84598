"""`mf demo`: seed a realistic network of multifactories and drive one joint project through
its whole life over the HTTP API, slowly enough to watch the live view move."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from infra.auth import mint_token


def _space(wid, name, city, country, lat, long, languages, tz):
    return {
        "workspace_id": wid,
        "name": name,
        "city": city,
        "country": country,
        "location": {"lat": lat, "long": long, "mappableAddress": f"{name}, {city}"},
        "languages": languages,
        "timezone": tz,
    }


WORKSPACES = [
    _space(
        "mage", "MAGE", "Sesto San Giovanni", "IT", 45.5343, 9.2386, ["it", "en"], "Europe/Rome"
    ),
    _space(
        "freiland",
        "FreiLand Potsdam",
        "Potsdam",
        "DE",
        52.3906,
        13.0645,
        ["de", "en"],
        "Europe/Berlin",
    ),
    _space("bloqs", "Building BloQs", "London", "GB", 51.6058, -0.0472, ["en"], "Europe/London"),
    _space("r84", "R84 Mantova", "Mantova", "IT", 45.1564, 10.7914, ["it", "en"], "Europe/Rome"),
    _space(
        "ateneu",
        "Ateneu de Fabricació",
        "Barcelona",
        "ES",
        41.4036,
        2.1744,
        ["es", "ca", "en"],
        "Europe/Madrid",
    ),
    _space(
        "makerversity",
        "Makerversity",
        "Amsterdam",
        "NL",
        52.3676,
        4.9041,
        ["nl", "en"],
        "Europe/Amsterdam",
    ),
    _space(
        "otelo", "Otelo Werkstatt", "Vienna", "AT", 48.2082, 16.3738, ["de", "en"], "Europe/Vienna"
    ),
    _space(
        "nod",
        "NOD Makerspace",
        "Bucharest",
        "RO",
        44.4268,
        26.1025,
        ["ro", "en"],
        "Europe/Bucharest",
    ),
]

# (member id, name, kind, [(capability, level)], weekly hours, languages, presentation)
MEMBERS: dict[str, list[tuple]] = {
    "mage": [
        (
            "giulia-bici",
            "Giulia Bici Cargo",
            "company",
            [("frame-welding", 4), ("industrial-design", 3)],
            35,
            ["it", "en"],
            "Cargo bikes built in Sesto.",
        ),
        (
            "sartoria-mage",
            "Sartoria Mage",
            "artisan",
            [("dressmaking", 5), ("leather-sewing", 2)],
            25,
            ["it"],
            "Made-to-measure clothing.",
        ),
        (
            "studio-ferro",
            "Studio Ferro Architetti",
            "professional",
            [("architecture", 4), ("industrial-design", 4)],
            20,
            ["it", "en"],
            "Small architecture studio.",
        ),
    ],
    "freiland": [
        (
            "lena-leder",
            "Lena Vogt Lederwerk",
            "artisan",
            [("leather-sewing", 5)],
            30,
            ["de", "en"],
            "Bags from vegetable-tanned leather.",
        ),
        (
            "potsdam-print",
            "Potsdam Print Collective",
            "collective",
            [("3d-printing", 4), ("laser-cutting", 3)],
            40,
            ["de", "en"],
            "Shared printers and a laser.",
        ),
    ],
    "bloqs": [
        (
            "toms-frames",
            "Tom's Frames",
            "company",
            [("frame-welding", 5), ("cnc-milling", 3)],
            30,
            ["en"],
            "Steel and titanium frames.",
        ),
        (
            "east-film",
            "East London Film Co-op",
            "collective",
            [("filmmaking", 4), ("photography", 4)],
            15,
            ["en"],
            "Documentary film for makers.",
        ),
    ],
    "r84": [
        (
            "laser-mantova",
            "Laser Mantova",
            "company",
            [("laser-cutting", 5), ("cnc-milling", 4)],
            40,
            ["it", "en"],
            "Laser and CNC on demand.",
        ),
        (
            "ori-gioielli",
            "Ori Gioielli",
            "artisan",
            [("jewellery", 5)],
            20,
            ["it"],
            "Handmade jewellery.",
        ),
    ],
    "ateneu": [
        (
            "bcn-bags",
            "Bossa Barcelona",
            "company",
            [("leather-sewing", 4), ("dressmaking", 3)],
            35,
            ["es", "en"],
            "Bag factory, small series.",
        ),
    ],
    "makerversity": [
        (
            "ams-design",
            "Noord Design Studio",
            "professional",
            [("industrial-design", 5)],
            25,
            ["nl", "en"],
            "Product design.",
        ),
    ],
    "otelo": [
        (
            "wien-print",
            "Wiener 3D Druck",
            "company",
            [("3d-printing", 5)],
            30,
            ["de", "en"],
            "Industrial 3D printing.",
        ),
    ],
    "nod": [
        (
            "nod-textile",
            "NOD Textile Lab",
            "collective",
            [("dressmaking", 4), ("leather-sewing", 3)],
            30,
            ["ro", "en"],
            "Textile prototyping.",
        ),
    ],
}

COORDINATOR = ("mage", "giulia-bici")


def project_proposal(now: datetime) -> dict:
    return {
        "title": "Cargo bikes with leather panniers for Forno Padova",
        "description": "Three cargo bikes for a Milan bakery's deliveries, with waterproof "
        "leather panniers and a laser-cut logo plate.",
        "deliverable": "3 cargo bikes with panniers",
        "delivery_location": {
            "lat": 45.4969,
            "long": 9.2212,
            "mappableAddress": "Via Padova 120, Milano",
        },
        "due": (now + timedelta(days=45)).isoformat(),
        "open_call": True,
        "roles": [
            {
                "role_id": "frames",
                "capability": "frame-welding",
                "effortQuantity": {"hasNumericalValue": 60, "hasUnit": "hour"},
            },
            {
                "role_id": "panniers",
                "capability": "leather-sewing",
                "effortQuantity": {"hasNumericalValue": 24, "hasUnit": "hour"},
                "seats": 2,
                "required_language": "en",
            },
            {
                "role_id": "logo-plate",
                "capability": "laser-cutting",
                "effortQuantity": {"hasNumericalValue": 4, "hasUnit": "hour"},
                "max_distance_km": 400,
            },
        ],
    }


# Who is invited to which role when matching has no proposal (the service may be off).
FALLBACK_TEAM = {
    "frames": ["toms-frames"],
    "panniers": ["lena-leder", "bcn-bags"],
    "logo-plate": ["laser-mantova"],
}


@dataclass
class Tokens:
    secret: str

    def make(self, workspace_id: str, role: str, member_id: str | None = None) -> str:
        return mint_token(self.secret, workspace_id, role, member_id)


class DemoError(RuntimeError):
    pass


async def run_demo(
    base_url: str, secret: str, say: Callable[[str], None], pace: float = 2.0
) -> str:
    """Seed the network (idempotent), then run one project to delivery. Returns its id."""
    tokens = Tokens(secret)
    member_workspace = {m[0]: wid for wid, members in MEMBERS.items() for m in members}

    async def call(method: str, path: str, token: str, body: dict | None = None) -> dict:
        async with httpx.AsyncClient(base_url=base_url, timeout=20) as client:
            response = await client.request(
                method, path, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        if response.status_code == 409 and response.json().get("error") == "already_exists":
            return {}
        if response.status_code >= 400:
            raise DemoError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    ops = tokens.make("ops", "ops")
    for space in WORKSPACES:
        await call("POST", "/workspaces", ops, space)
        coordinator = tokens.make(space["workspace_id"], "coordinator")
        for member_id, name, kind, capabilities, hours, languages, about in MEMBERS[
            space["workspace_id"]
        ]:
            body = {
                "member_id": member_id,
                "name": name,
                "kind": kind,
                "capabilities": [{"capability": c, "level": level} for c, level in capabilities],
                "weekly_capacity": {"hasNumericalValue": hours, "hasUnit": "hour"},
                "languages": languages,
                "presentation": about,
            }
            await call("POST", f"/workspaces/{space['workspace_id']}/members", coordinator, body)
    say(f"Seeded {len(WORKSPACES)} workspaces and {len(member_workspace)} members.")

    watch = tokens.make(COORDINATOR[0], "coordinator", COORDINATOR[1])
    say(f"Watch MAGE's live view: open {base_url}/ and paste this token:\n{watch}\n")
    await asyncio.sleep(pace)

    project = await call("POST", "/projects", watch, project_proposal(datetime.now(UTC)))
    project_id = project["id"]
    say(f"Giulia (MAGE) proposed project {project_id}.")
    await asyncio.sleep(pace)

    team = await _team_from_matching(call, watch, project_id, pace) or FALLBACK_TEAM
    for role_id, member_ids in team.items():
        for member_id in member_ids:
            await call(
                "POST",
                f"/projects/{project_id}/invitations",
                watch,
                {"role_id": role_id, "member_id": member_id, "message": "Would you join us?"},
            )
            say(f"Invited {member_id} ({member_workspace[member_id]}) as {role_id}.")
            await asyncio.sleep(pace / 2)

    history = await call("GET", f"/projects/{project_id}/history", watch)
    invited = [e["data"] for e in history["events"] if e["type"] == "project.partner_invited"]
    for invitation in invited:
        member_id = invitation["member_id"]
        member_token = tokens.make(member_workspace[member_id], "member", member_id)
        await call(
            "POST",
            f"/projects/{project_id}/invitations/{invitation['invitation_id']}/acceptance",
            member_token,
        )
        say(f"{member_id} accepted the {invitation['role_id']} seat.")
        await asyncio.sleep(pace)

    await call(
        "POST", f"/projects/{project_id}/production", watch, {"note": "Frames and leather ordered."}
    )
    say("Production started.")
    await asyncio.sleep(pace)
    frames = team["frames"][0]
    frames_token = tokens.make(member_workspace[frames], "member", frames)
    await call(
        "POST",
        f"/projects/{project_id}/progress",
        frames_token,
        {"note": "All three frames welded and powder-coated."},
    )
    say("Progress noted by the frame builder.")
    await asyncio.sleep(pace)
    await call(
        "POST", f"/projects/{project_id}/delivery", watch, {"note": "Handed over at Forno Padova."}
    )
    say(f"Delivered. See the whole history: GET {base_url}/projects/{project_id}/history")
    return project_id


async def _team_from_matching(call, token: str, project_id: str, pace: float) -> dict | None:
    """The matcher's suggested team, if the matching service answers within a few seconds."""
    for _ in range(int(10 / max(pace / 4, 0.25))):
        try:
            project = await call("GET", f"/projects/{project_id}", token)
        except DemoError:  # the live view has not caught up yet
            project = {}
        proposals = project.get("proposals")
        team = (proposals or {}).get("team") or {}
        if team.get("complete"):
            chosen: dict[str, list[str]] = {}
            for member in team["members"]:
                chosen.setdefault(member["role_id"], []).append(member["member_id"])
            return chosen
        await asyncio.sleep(max(pace / 4, 0.25))
    return None
