"""How an event looks on the wire: a JSON body (envelope fields + `data`) and NATS headers.

Body:    {"event_id": ..., "type": ..., "schema_version": ..., ..., "data": {...payload}}
Headers: Nats-Msg-Id (= event_id, JetStream dedup), Mf-Type, Mf-Schema-Version,
         Mf-Correlation-Id, traceparent (W3C, when present).
Any NATS client in any language can read it without this code.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from contracts.base import Event
from contracts.envelope import Envelope, PendingEvent
from contracts.registry import EventDecodeError, decode_event, describe_validation_error

HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_TYPE = "Mf-Type"
HEADER_SCHEMA_VERSION = "Mf-Schema-Version"
HEADER_CORRELATION_ID = "Mf-Correlation-Id"
HEADER_TRACEPARENT = "traceparent"


def encode_body(pending: PendingEvent) -> bytes:
    # pydantic's own JSON (compact, UTF-8 kept as is): the same document as json.dumps of
    # model_dump(mode="json"), in a third of the time — this runs once per appended event.
    envelope = pending.envelope.model_dump_json()
    data = pending.event.model_dump_json(exclude={"type"}, by_alias=True)
    return f'{envelope[:-1]},"data":{data}}}'.encode()


def encode_headers(envelope: Envelope) -> dict[str, str]:
    headers = {
        HEADER_MSG_ID: envelope.event_id,
        HEADER_TYPE: envelope.type,
        HEADER_SCHEMA_VERSION: str(envelope.schema_version),
        HEADER_CORRELATION_ID: envelope.correlation_id,
    }
    if envelope.traceparent:
        headers[HEADER_TRACEPARENT] = envelope.traceparent
    return headers


def decode_body(body: bytes) -> tuple[Envelope, Event]:
    """Bytes from the log -> (envelope, current-version event). Raises EventDecodeError."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise EventDecodeError(f"body is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise EventDecodeError("body must be a JSON object")
    if "data" not in document:
        raise EventDecodeError("body has no 'data' field", document.get("type"))
    data = document.pop("data")
    try:
        envelope = Envelope.model_validate(document)
    except ValidationError as error:
        raise EventDecodeError(
            f"envelope: {describe_validation_error(error)}", document.get("type")
        ) from error
    event = decode_event(envelope.type, envelope.schema_version, data)
    if envelope.schema_version != type(event).schema_version:
        envelope = envelope.model_copy(update={"schema_version": type(event).schema_version})
    return envelope, event
