"""Verified tokens are remembered, but never past their expiry."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import HTTPException

from infra.auth import TokenClaims, issue_token
from infra.http_auth import TokenVerifier

SECRET = "unit-secret"


def token(expires_in: timedelta | None = None, token_id: str = "t1") -> str:
    now = datetime.now(UTC)
    claims = TokenClaims(
        workspace_id="mage",
        role="coordinator",
        member_id="ada",
        token_id=token_id,
        issued_at=now,
        expires_at=now + expires_in if expires_in else None,
    )
    return issue_token(SECRET, claims)


def test_a_cached_token_is_refused_once_it_expires():
    verifier = TokenVerifier(SECRET)
    short = token(timedelta(milliseconds=200))
    assert verifier.claims_of(f"Bearer {short}").member_id == "ada"
    time.sleep(0.25)
    with pytest.raises(HTTPException) as refused:
        verifier.claims_of(f"Bearer {short}")
    assert refused.value.status_code == 401 and "expired" in refused.value.detail


def test_a_forged_token_is_never_cached():
    verifier = TokenVerifier(SECRET)
    forged = token()[:-2] + "xx"
    for _ in range(2):
        with pytest.raises(HTTPException) as refused:
            verifier.claims_of(f"Bearer {forged}")
        assert refused.value.status_code == 401


def test_the_cache_keeps_only_the_newest_tokens():
    verifier = TokenVerifier(SECRET, cached=2)
    tokens = [token(token_id=f"t{i}") for i in range(3)]
    for value in tokens:
        verifier.verify(value)
    assert list(verifier._verified) == tokens[1:]
