"""PostgreSQL plumbing: pools bound to one schema, and which errors are worth retrying."""

from __future__ import annotations

import asyncio

import asyncpg


def quote_identifier(name: str) -> str:
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


async def create_pool(
    url: str, schema: str, *, min_size: int = 1, max_size: int = 10, search_path: str = ""
) -> asyncpg.Pool:
    """A pool whose connections see `schema` first (then `search_path`, then public)."""
    path = ", ".join(
        quote_identifier(part.strip())
        for part in [schema, *search_path.split(","), "public"]
        if part.strip()
    )
    return await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": path, "application_name": f"mf-{schema}"},
    )


# Errors that say "the database is not reachable right now", not "this data is wrong".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.InsufficientResourcesError,
    # raised when the server goes away mid-protocol ("cannot switch to state ...")
    asyncpg.exceptions.InternalClientError,
)


def is_transient(error: BaseException) -> bool:
    return isinstance(error, TRANSIENT_ERRORS)
