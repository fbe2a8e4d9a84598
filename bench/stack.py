"""The projects service as `mf up` runs it (migrations, live-view projection, HTTP API), on
the bench's own servers, with unique names that are removed afterwards."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from bench import servers
from infra.auth import mint_token
from infra.settings import Settings
from infra.stack import Infrastructure, open_infrastructure
from services.projects.app import ProjectsService, running


@contextlib.asynccontextmanager
async def projects_service(
    durable: bool, database_url: str
) -> AsyncIterator[tuple[Infrastructure, ProjectsService, servers.Nats]]:
    prefix = servers.unique("s") + "_"
    root = servers.unique("r")
    with tempfile.TemporaryDirectory(prefix="mf-bench-data-") as data_dir:
        async with (
            servers.embedded_nats(durable) as nats,
            servers.schemas(database_url, prefix),
        ):
            settings = Settings(
                nats_url=nats.url,
                database_url=database_url,
                data_dir=Path(data_dir),
                stream=root.upper(),
                subject_root=root,
                schema_prefix=prefix,
                token_secret="bench-token-secret",
            )
            async with (
                open_infrastructure(settings, client_name="mf-bench") as infra,
                running(infra, sweep_every=3600) as service,
            ):
                yield infra, service, nats


def token(infra: Infrastructure, workspace_id: str, role: str, member_id: str | None) -> str:
    return mint_token(infra.token_secret, workspace_id, role, member_id)


async def load_process(url: str, plan: dict, module: str = "bench.http_load") -> dict:
    """Run a load-generating module in its own process with `plan`; return its JSON result."""
    import asyncio
    import json

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(plan, file)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            "--url",
            url,
            "--plan",
            file.name,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        output, errors = await process.communicate()
    finally:
        os.unlink(file.name)
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed: {errors.decode()[-2000:]}")
    return json.loads(output)
