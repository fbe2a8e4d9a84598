"""Creating the event stream with nats-py (never faststream's declare, which drops settings)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient

from contracts.subjects import SubjectScheme
from infra.eventstore import EventStoreError

DUPLICATE_WINDOW_NS = 120 * 1_000_000_000  # 2 minutes


@dataclass(frozen=True, slots=True)
class EventStreamSpec:
    name: str
    scheme: SubjectScheme
    replicas: int = 1

    def config(self) -> dict:
        # Limits retention with no age/count/size limit: history is kept forever.
        return {
            "name": self.name,
            "subjects": [self.scheme.all_events()],
            "retention": "limits",
            "storage": "file",
            "num_replicas": self.replicas,
            "max_age": 0,
            "max_msgs": -1,
            "max_bytes": -1,
            "max_msgs_per_subject": -1,
            "discard": "old",
            "duplicate_window": DUPLICATE_WINDOW_NS,
            "allow_direct": True,
            "allow_atomic": True,
            "deny_delete": True,
            "deny_purge": False,
        }


async def _api(client: NatsClient, subject: str, payload: dict | None = None) -> dict:
    body = json.dumps(payload).encode() if payload is not None else b""
    reply = await client.request(subject, body, timeout=10)
    return json.loads(reply.data)


async def ensure_event_stream(client: NatsClient, spec: EventStreamSpec) -> dict:
    """Create the stream, or bring an existing one to our settings. Returns its config."""
    info = await _api(client, f"$JS.API.STREAM.INFO.{spec.name}")
    wanted = spec.config()
    if "error" in info:
        if info["error"].get("err_code") != 10059:  # stream not found
            raise EventStoreError(f"cannot inspect stream {spec.name}: {info['error']}")
        created = await _api(client, f"$JS.API.STREAM.CREATE.{spec.name}", wanted)
        if "error" in created:
            raise EventStoreError(f"cannot create stream {spec.name}: {created['error']}")
        return created["config"]
    current = info["config"]
    if any(current.get(key) != value for key, value in wanted.items()):
        updated = await _api(client, f"$JS.API.STREAM.UPDATE.{spec.name}", {**current, **wanted})
        if "error" in updated:
            raise EventStoreError(f"cannot update stream {spec.name}: {updated['error']}")
        return updated["config"]
    return current


async def delete_stream(client: NatsClient, name: str) -> None:
    await _api(client, f"$JS.API.STREAM.DELETE.{name}")
