"""Idempotency keys: the first response to a (caller, key) is kept and replayed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import asyncpg


class IdempotencyConflictError(Exception):
    """The key is in use by another request (in progress, or with a different body)."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: dict


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class IdempotencyKeys:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def begin(self, caller: str, key: str, fingerprint: str) -> StoredResponse | None:
        """Claim the key; returns the stored response when this is a replay."""
        async with self.pool.acquire() as connection:
            claimed = await connection.fetchval(
                "INSERT INTO idempotency_keys (caller, key, request_hash) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING RETURNING true",
                caller,
                key,
                fingerprint,
            )
            if claimed:
                return None
            row = await connection.fetchrow(
                "SELECT request_hash, status, response FROM idempotency_keys"
                " WHERE caller = $1 AND key = $2",
                caller,
                key,
            )
        if row is None:  # released between our insert and select: try once more
            return await self.begin(caller, key, fingerprint)
        if row["request_hash"] != fingerprint:
            raise IdempotencyConflictError("this Idempotency-Key was used for a different request")
        if row["status"] is None:
            raise IdempotencyConflictError("a request with this Idempotency-Key is in progress")
        return StoredResponse(row["status"], json.loads(row["response"]))

    async def complete(self, caller: str, key: str, response: StoredResponse) -> None:
        async with self.pool.acquire() as connection:
            await connection.execute(
                "UPDATE idempotency_keys SET status = $3, response = $4::jsonb"
                " WHERE caller = $1 AND key = $2",
                caller,
                key,
                response.status,
                json.dumps(response.body),
            )

    async def release(self, caller: str, key: str) -> None:
        """Forget a claim whose request failed, so the client may retry it."""
        async with self.pool.acquire() as connection:
            await connection.execute(
                "DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2 AND status IS NULL",
                caller,
                key,
            )
