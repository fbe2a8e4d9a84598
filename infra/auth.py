"""Bearer tokens bound to a workspace and a role, signed with HMAC-SHA256.

    mf1.<base64url(JSON claims)>.<base64url(signature)>

Claims: workspace_id, role (coordinator | member | ops), member_id (who acts, for member
and coordinator tokens), token_id, issued_at, expires_at (optional). Verification needs
only the shared secret, so every service checks tokens without calling another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from contracts.base import Contract, Identifier
from infra.ids import new_id

Role = Literal["coordinator", "member", "ops"]
PREFIX = "mf1"


class InvalidTokenError(ValueError):
    pass


class TokenClaims(Contract):
    workspace_id: Identifier
    role: Role
    member_id: Identifier | None = None
    token_id: str
    issued_at: datetime
    expires_at: datetime | None = None

    @property
    def actor(self) -> str:
        """Who is acting, as written into event envelopes."""
        if self.member_id:
            return f"member:{self.member_id}"
        return f"{self.role}:{self.workspace_id}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), f"{PREFIX}.{payload}".encode(), hashlib.sha256).digest())


def issue_token(secret: str, claims: TokenClaims) -> str:
    payload = _b64(claims.model_dump_json().encode())
    return f"{PREFIX}.{payload}.{_sign(secret, payload)}"


def mint_token(
    secret: str,
    workspace_id: str,
    role: str,
    member_id: str | None = None,
    *,
    expires_at: datetime | None = None,
) -> str:
    """A fresh token (new id, issued now) for a workspace, a role and the acting member.
    Raises pydantic's ValidationError for claims that cannot be (an unknown role ...)."""
    claims = TokenClaims(
        workspace_id=workspace_id,
        role=role,
        member_id=member_id,
        token_id=new_id(),
        issued_at=datetime.now(UTC),
        expires_at=expires_at,
    )
    return issue_token(secret, claims)


def verify_token(secret: str, token: str, *, now: datetime | None = None) -> TokenClaims:
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise InvalidTokenError("not a Multifactory token (expected mf1.<claims>.<signature>)")
    _, payload, signature = parts
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise InvalidTokenError("token signature does not verify")
    try:
        claims = TokenClaims.model_validate_json(_unb64(payload))
    except (ValidationError, ValueError) as error:
        raise InvalidTokenError("token claims are malformed") from error
    check_not_expired(claims, now)
    return claims


def check_not_expired(claims: TokenClaims, now: datetime | None = None) -> None:
    if claims.expires_at and claims.expires_at <= (now or datetime.now(UTC)):
        raise InvalidTokenError("token has expired")


def load_or_create_secret(path: Path) -> str:
    """The signing secret kept in the data dir, created on first use (mode 0600)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    path.write_text(secret)
    path.chmod(0o600)
    return secret
