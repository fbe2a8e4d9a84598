"""A workspace's notification feed on NATS: the log's event, addressed to one workspace.

Subject: `<root>.feed.<workspace_id>.<event_type>`, e.g. `mf.feed.mage.project.partner_invited`.
Body:    exactly the event body of the log (contracts.wire): envelope fields + `data`, at the
         current schema version.
Headers: the log's headers (Mf-Type, Mf-Schema-Version, Mf-Correlation-Id, traceparent), plus
    Mf-Event-Id   the event id: the same on every workspace's feed; dedup on it
    Mf-Sequence   the event's position in the log (stream sequence): increases along a feed
    Mf-Workspace  the workspace this copy is for
    Mf-Members    members of that workspace the event is about, comma separated (may be absent)
    Mf-Concerns   why the workspace hears of it: coordinator, participant, invitee, open_call,
                  workspace, scope (comma separated)
    Nats-Msg-Id   `<workspace_id>:<event_id>`: unique per copy, so a JetStream stream put on
                  `<root>.feed.>` dedups republished copies without merging workspaces
A message may arrive more than once (at-least-once); subscribers dedup on Mf-Event-Id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from contracts.base import Event
from contracts.envelope import Envelope
from contracts.registry import EventDecodeError
from contracts.wire import HEADER_MSG_ID, decode_body

HEADER_EVENT_ID = "Mf-Event-Id"
HEADER_SEQUENCE = "Mf-Sequence"
HEADER_WORKSPACE = "Mf-Workspace"
HEADER_MEMBERS = "Mf-Members"
HEADER_CONCERNS = "Mf-Concerns"


def feed_headers(
    log_headers: Mapping[str, str],
    *,
    event_id: str,
    sequence: int,
    workspace_id: str,
    members: Iterable[str] = (),
    concerns: Iterable[str] = (),
) -> dict[str, str]:
    """Headers of one feed copy: the log's headers plus the feed's own."""
    headers = dict(log_headers)
    headers[HEADER_MSG_ID] = f"{workspace_id}:{event_id}"
    headers[HEADER_EVENT_ID] = event_id
    headers[HEADER_SEQUENCE] = str(sequence)
    headers[HEADER_WORKSPACE] = workspace_id
    if members := ",".join(members):
        headers[HEADER_MEMBERS] = members
    if concerns := ",".join(concerns):
        headers[HEADER_CONCERNS] = concerns
    return headers


@dataclass(frozen=True, slots=True)
class FeedMessage:
    workspace_id: str
    sequence: int
    members: tuple[str, ...]
    concerns: tuple[str, ...]
    envelope: Envelope
    event: Event

    @property
    def event_id(self) -> str:
        return self.envelope.event_id


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part for part in (value or "").split(",") if part)


def decode_feed_message(body: bytes, headers: Mapping[str, str] | None) -> FeedMessage:
    """A received feed message -> FeedMessage. Raises EventDecodeError."""
    headers = headers or {}
    envelope, event = decode_body(body)
    try:
        sequence = int(headers[HEADER_SEQUENCE])
        workspace_id = headers[HEADER_WORKSPACE]
    except (KeyError, ValueError) as error:
        raise EventDecodeError(
            f"feed message lacks a valid {HEADER_SEQUENCE} / {HEADER_WORKSPACE} header",
            envelope.type,
        ) from error
    return FeedMessage(
        workspace_id=workspace_id,
        sequence=sequence,
        members=_split(headers.get(HEADER_MEMBERS)),
        concerns=_split(headers.get(HEADER_CONCERNS)),
        envelope=envelope,
        event=event,
    )
