"""How an event looks on the wire: a JSON body (envelope fields + `data`) and NATS headers.

Body:    {"event_id": ..., "type": ..., "schema_version": ..., ..., "data": {...payload}}
Headers: Nats-Msg-Id (= event_id, JetStream dedup), Mf-Type, Mf-Schema-Version,
         Mf-Correlation-Id, traceparent (W3C, when present).
Any NATS client in any language can read it without this code.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, Union

from pydantic import Field, TypeAdapter, ValidationError, create_model

from contracts.base import Event
from contracts.envelope import Envelope, PendingEvent
from contracts.registry import (
    EVENT_CLASSES,
    EventDecodeError,
    decode_event,
    describe_validation_error,
)

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
    return _decode_current(body) or _decode_any(body)


def _body_model(cls: type[Event]) -> type[Envelope]:
    """The whole body of a current-version `cls` event as one model: the envelope's fields
    (same validation) with the type pinned, and `data` validated by the event class."""
    return create_model(
        f"{cls.__name__}Body",
        __base__=Envelope,
        type=(Literal[cls.event_type()], ...),
        data=(cls, ...),
    )


_CURRENT_VERSION = {cls.event_type(): cls.schema_version for cls in EVENT_CLASSES}
_CURRENT_BODY = TypeAdapter(
    Annotated[
        Union[tuple(_body_model(cls) for cls in EVENT_CLASSES)],  # noqa: UP007
        Field(discriminator="type"),
    ]
)
_DATA = frozenset({"data"})
_set_attribute = object.__setattr__  # the models are frozen


def _decode_current(body: bytes) -> tuple[Envelope, Event] | None:
    """The fast path: a valid body of a current-version event, parsed and validated in one
    pass by pydantic-core. None for anything else (an old version to upcast, or a body to
    refuse), which `_decode_any` then decodes or explains."""
    try:
        document = _CURRENT_BODY.validate_json(body)
    except ValidationError:
        return None
    event = document.data
    if document.schema_version != _CURRENT_VERSION[document.type]:
        return None
    if "type" in event.model_fields_set:
        return None  # refused by _decode_any: the data must not carry its own type
    return _validated_envelope(document), event


def _validated_envelope(document: Envelope) -> Envelope:
    """The envelope part of a validated body, as a plain `Envelope`, without validating it
    again: what `Envelope.model_construct` builds, in a third of its time."""
    values = document.__dict__.copy()
    del values["data"]
    envelope = Envelope.__new__(Envelope)
    _set_attribute(envelope, "__dict__", values)
    _set_attribute(envelope, "__pydantic_fields_set__", document.model_fields_set - _DATA)
    _set_attribute(envelope, "__pydantic_extra__", None)
    _set_attribute(envelope, "__pydantic_private__", None)
    return envelope


def _decode_any(body: bytes) -> tuple[Envelope, Event]:
    """Any body: JSON, envelope, upcast to the current version, validate; or say why not."""
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
