"""Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>`, checked by receivers.

A delivery carries
    Mf-Timestamp: 1764086400                 (Unix seconds when the attempt was sent)
    Mf-Signature: v1=<hex HMAC-SHA256(secret, "1764086400." + raw body)>
Receivers recompute the HMAC over the raw bytes they received and refuse timestamps more
than `tolerance` seconds away from their clock, so a captured request cannot be replayed
later. `Mf-Signature` may list several `v1=` values (comma separated) while a secret is
being rotated; one match is enough.

Receivers in Python can call `verify_signature`; in other languages, the four lines of
`sign` are the whole algorithm (see docs/feeds.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

HEADER_SIGNATURE = "Mf-Signature"
HEADER_TIMESTAMP = "Mf-Timestamp"
HEADER_EVENT_ID = "Mf-Event-Id"
HEADER_EVENT_TYPE = "Mf-Event-Type"
HEADER_DELIVERY_ID = "Mf-Delivery-Id"
HEADER_SEQUENCE = "Mf-Sequence"
HEADER_ATTEMPT = "Mf-Attempt"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300.0  # seconds
SECRET_PREFIX = "whsec_"


class SignatureError(ValueError):
    """The request is not a genuine, fresh delivery; the message says why."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` keyed with the secret's UTF-8 bytes."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_headers(secret: str, body: bytes, *, timestamp: int) -> dict[str, str]:
    return {
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: f"{SCHEME}={sign(secret, timestamp, body)}",
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():  # plain dicts are case-sensitive; HTTP is not
        if key.lower() == wanted:
            return candidate
    return None


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> int:
    """Check a received delivery; return its timestamp, or raise SignatureError.

    `body` must be the raw request bytes (not re-serialised JSON). `now` defaults to the
    local clock (Unix seconds).
    """
    raw_timestamp = _header(headers, HEADER_TIMESTAMP)
    raw_signature = _header(headers, HEADER_SIGNATURE)
    if raw_timestamp is None:
        raise SignatureError(f"missing {HEADER_TIMESTAMP} header")
    if raw_signature is None:
        raise SignatureError(f"missing {HEADER_SIGNATURE} header")
    try:
        timestamp = int(raw_timestamp.strip())
    except ValueError as error:
        raise SignatureError(
            f"{HEADER_TIMESTAMP} is not Unix seconds: {raw_timestamp!r}"
        ) from error
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance:
        direction = "old" if age > 0 else "far in the future"
        raise SignatureError(
            f"timestamp is {abs(age):.0f}s {direction} (tolerance {tolerance:.0f}s): "
            "a replayed or delayed request"
        )
    expected = sign(secret, timestamp, body)
    offered = [
        value.strip()[len(SCHEME) + 1 :]
        for value in raw_signature.split(",")
        if value.strip().startswith(f"{SCHEME}=")
    ]
    if not offered:
        raise SignatureError(f"{HEADER_SIGNATURE} has no {SCHEME}= signature")
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise SignatureError("signature does not match (wrong secret or altered body)")
    return timestamp
