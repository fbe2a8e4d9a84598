"""Fixtures for whole flows over HTTP: a running projects service and token-holding clients."""

from __future__ import annotations

import httpx
import pytest

from infra.auth import mint_token
from services.projects.app import running as projects_running


@pytest.fixture
async def projects_service(infrastructure):
    async with projects_running(infrastructure, sweep_every=0.5) as service:
        yield service


class Api:
    """An HTTP client acting with one token."""

    def __init__(self, base_url: str, secret: str, workspace_id: str, role: str, member_id=None):
        self.token = mint_token(secret, workspace_id, role, member_id)
        self.client = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )

    async def post(self, path: str, json: dict | None = None, **headers) -> httpx.Response:
        return await self.client.post(path, json=json or {}, headers=headers)

    async def get(self, path: str, **params) -> httpx.Response:
        return await self.client.get(path, params=params)

    async def put(self, path: str, json: dict, **headers) -> httpx.Response:
        return await self.client.put(path, json=json, headers=headers)

    async def close(self) -> None:
        await self.client.aclose()


@pytest.fixture
async def api_as(projects_service, infrastructure):
    """api_as(workspace_id, role, member_id=None) -> Api; closed after the test."""
    made: list[Api] = []

    def make(workspace_id: str, role: str, member_id: str | None = None) -> Api:
        api = Api(projects_service.url, infrastructure.token_secret, workspace_id, role, member_id)
        made.append(api)
        return api

    yield make
    for api in made:
        await api.close()
