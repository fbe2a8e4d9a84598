"""A small real network for e2e tests: four spaces, a handful of members."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

WORKSPACES = [
    {
        "workspace_id": "mage",
        "name": "MAGE",
        "city": "Sesto San Giovanni",
        "country": "IT",
        "location": {"lat": 45.534, "long": 9.238},
        "languages": ["it", "en"],
        "timezone": "Europe/Rome",
    },
    {
        "workspace_id": "freiland",
        "name": "FreiLand Potsdam",
        "city": "Potsdam",
        "country": "DE",
        "location": {"lat": 52.39, "long": 13.064},
        "languages": ["de", "en"],
        "timezone": "Europe/Berlin",
    },
    {
        "workspace_id": "bloqs",
        "name": "Building BloQs",
        "city": "London",
        "country": "GB",
        "location": {"lat": 51.6, "long": -0.05},
        "languages": ["en"],
        "timezone": "Europe/London",
    },
]

MEMBERS = {
    "mage": [
        ("ada", "Ada Bikes", "company", [("frame-welding", 4), ("industrial-design", 3)]),
    ],
    "freiland": [
        ("lena", "Lena Vogt Lederwerk", "artisan", [("leather-sewing", 5)]),
        ("jonas", "Jonas Taschen", "artisan", [("leather-sewing", 3)]),
    ],
    "bloqs": [
        ("tom", "Tom's Frames", "company", [("frame-welding", 5)]),
    ],
}


def member_body(member_id: str, name: str, kind: str, capabilities) -> dict:
    return {
        "member_id": member_id,
        "name": name,
        "kind": kind,
        "capabilities": [{"capability": c, "level": level} for c, level in capabilities],
        "weekly_capacity": {"hasNumericalValue": 30, "hasUnit": "hour"},
        "languages": ["en"],
    }


def project_body(title: str = "Cargo bike with leather panniers", open_call: bool = True) -> dict:
    return {
        "title": title,
        "deliverable": "3 cargo bikes",
        "delivery_location": {"lat": 45.46, "long": 9.19, "mappableAddress": "Milano"},
        "due": (datetime.now(UTC) + timedelta(days=60)).isoformat(),
        "open_call": open_call,
        "roles": [
            {
                "role_id": "frame",
                "capability": "frame-welding",
                "effortQuantity": {"hasNumericalValue": 40, "hasUnit": "hour"},
            },
            {
                "role_id": "bags",
                "capability": "leather-sewing",
                "effortQuantity": {"hasNumericalValue": 24, "hasUnit": "hour"},
                "seats": 2,
            },
        ],
    }


async def seed_network(api_as) -> None:
    ops = api_as("ops", "ops")
    for workspace in WORKSPACES:
        response = await ops.post("/workspaces", workspace)
        assert response.status_code == 201, response.text
        coordinator = api_as(workspace["workspace_id"], "coordinator")
        for member_id, name, kind, capabilities in MEMBERS[workspace["workspace_id"]]:
            response = await coordinator.post(
                f"/workspaces/{workspace['workspace_id']}/members",
                member_body(member_id, name, kind, capabilities),
            )
            assert response.status_code == 201, response.text
