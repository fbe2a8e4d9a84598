"""Bearer tokens over HTTP: the caller's verified claims (401 without a valid token).

`claims_dependency` is the FastAPI dependency; `TokenVerifier.claims_of` serves routes that
read their headers themselves (and describe them with `BEARER_OPENAPI`). Both verify through
a bounded cache: a token's signature and claims are checked once, its expiry every time.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from infra.auth import InvalidTokenError, Role, TokenClaims, check_not_expired, verify_token

_bearer = HTTPBearer(auto_error=False, description="mf1 token from `mf tokens create`")

BEARER_OPENAPI = {"security": [{"HTTPBearer": []}]}  # what `Depends(_bearer)` would declare
CACHED_TOKENS = 4096


class TokenVerifier:
    def __init__(self, secret: str, cached: int = CACHED_TOKENS):
        self._secret = secret
        self._cached = cached
        self._verified: dict[str, TokenClaims] = {}

    def verify(self, token: str) -> TokenClaims:
        """The token's claims; raises 401 if it is malformed, forged or expired."""
        try:
            claims = self._verified.get(token)
            if claims is None:
                claims = verify_token(self._secret, token)
                if len(self._verified) >= self._cached:
                    del self._verified[next(iter(self._verified))]  # the oldest
                self._verified[token] = claims
            else:
                check_not_expired(claims)
        except InvalidTokenError as error:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, str(error), headers={"WWW-Authenticate": "Bearer"}
            ) from error
        return claims

    def claims_of(self, authorization: str | None) -> TokenClaims:
        """Claims from an `Authorization: Bearer mf1....` header value (401 without one)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _missing()
        return self.verify(token)


def claims_dependency(secret: str) -> Callable[..., TokenClaims]:
    verifier = TokenVerifier(secret)

    async def current_claims(  # on the event loop: a sync dependency costs a thread hop
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> TokenClaims:
        if credentials is None:
            raise _missing()
        return verifier.verify(credentials.credentials)

    return current_claims


def require_role(claims: TokenClaims, *roles: Role) -> None:
    if claims.role not in roles:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this needs a {' or '.join(roles)} token; yours is a {claims.role} token",
        )


def _missing() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "missing bearer token (Authorization: Bearer mf1....)",
        headers={"WWW-Authenticate": "Bearer"},
    )
