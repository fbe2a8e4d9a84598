"""A reference webhook receiver: verifies signatures, dedups on the event id, keeps what came.

Used by the tests (with scripted answers) and by `mf webhooks listen` to try deliveries
locally. A receiver in another language does the same three things: check Mf-Signature
over `Mf-Timestamp + "." + raw body`, refuse stale timestamps, dedup on Mf-Event-Id.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request, Response

from services.notifications.signing import (
    DEFAULT_TOLERANCE,
    HEADER_EVENT_ID,
    SignatureError,
    verify_signature,
)

# (path, requests this path had before this one, lower-case headers) -> status to answer
Answer = Callable[[str, int, dict[str, str]], Awaitable[int]]


async def always_ok(_path: str, _count: int, _headers: dict[str, str]) -> int:
    return 200


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    arrived_at: float  # time.monotonic() when the request came in
    signature_error: str | None  # None: verified (or no secret known for the path)
    status: int  # what was answered

    @property
    def event_id(self) -> str | None:
        return self.headers.get(HEADER_EVENT_ID.lower())


@dataclass
class ReferenceReceiver:
    """`secrets` maps a path (e.g. "/mage") to its endpoint's secret."""

    secrets: dict[str, str] = field(default_factory=dict)
    answer: Answer = always_ok
    tolerance: float = DEFAULT_TOLERANCE
    received: list[Received] = field(default_factory=list)  # in the order answered
    on_received: Callable[[Received], None] | None = None  # e.g. print it (`mf webhooks listen`)
    _arrivals: dict[str, int] = field(default_factory=dict)

    def at(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]

    def accepted(self, path: str) -> list[Received]:
        """Requests answered 2xx with a valid signature, first copy of each event only."""
        seen, unique = set(), []
        for request in self.at(path):
            if 200 <= request.status < 300 and request.signature_error is None:
                if request.event_id not in seen:
                    seen.add(request.event_id)
                    unique.append(request)
        return unique

    def app(self) -> FastAPI:
        app = FastAPI(title="reference webhook receiver")

        @app.post("/{name:path}")
        async def receive(name: str, request: Request) -> Response:
            path, arrived_at = f"/{name}", time.monotonic()
            body = await request.body()
            headers = {key.lower(): value for key, value in request.headers.items()}
            error = None
            if secret := self.secrets.get(path):
                try:
                    verify_signature(secret, headers, body, self.tolerance)
                except SignatureError as refused:
                    error = str(refused)
            count = self._arrivals.get(path, 0)
            self._arrivals[path] = count + 1
            status = 401 if error else await self.answer(path, count, headers)
            request = Received(path, headers, body, arrived_at, error, status)
            self.received.append(request)
            if self.on_received is not None:
                self.on_received(request)
            return Response(status_code=status)

        return app
