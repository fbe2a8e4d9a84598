"""FastAPI dependency: the caller's verified token claims (401 without a valid token)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from infra.auth import InvalidTokenError, Role, TokenClaims, verify_token

_bearer = HTTPBearer(auto_error=False, description="mf1 token from `mf tokens create`")


def claims_dependency(secret: str) -> Callable[..., TokenClaims]:
    async def current_claims(  # on the event loop: a sync dependency costs a thread hop
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> TokenClaims:
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer mf1....)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            return verify_token(secret, credentials.credentials)
        except InvalidTokenError as error:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, str(error), headers={"WWW-Authenticate": "Bearer"}
            ) from error

    return current_claims


def require_role(claims: TokenClaims, *roles: Role) -> None:
    if claims.role not in roles:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this needs a {' or '.join(roles)} token; yours is a {claims.role} token",
        )
