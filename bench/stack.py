"""The projects service as `mf up` runs it (migrations, live-view projection, HTTP API), on
the bench's own servers, with unique names that are removed afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from bench import servers
from infra.auth import mint_token
from infra.settings import Settings
from infra.stack import Infrastructure, child_environment, open_infrastructure
from services.projects.app import ProjectsService, running


@contextlib.asynccontextmanager
async def view_process(infra: Infrastructure) -> AsyncIterator[None]:
    """`mf serve projects-view` in its own process, as a deployment runs it."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("mf")),
        *("serve", "projects-view"),
        env=child_environment(infra) | {"MF_LOG_LEVEL": "warning"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    drain = None
    try:
        output = []
        while not output or not output[-1].startswith("Ready."):
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            if not line:
                raise RuntimeError(f"mf serve projects-view exited:\n{''.join(output)}")
            output.append(line)
        drain = asyncio.create_task(_drain(process.stdout))
        yield
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
        if drain is not None:
            drain.cancel()


async def _drain(stream: asyncio.StreamReader) -> None:
    """Read a child's output to its end, so a full pipe never blocks it."""
    await stream.read()


@contextlib.asynccontextmanager
async def projects_service(
    durable: bool, database_url: str, *, separate_view: bool = False
) -> AsyncIterator[tuple[Infrastructure, ProjectsService, servers.Nats]]:
    """separate_view: the live-view projection runs in its own process (`mf serve
    projects-view`), the API without it, as MF_PROJECTS_VIEW_IN_API=false deploys them."""
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
            async with contextlib.AsyncExitStack() as stack:
                infra = await stack.enter_async_context(
                    open_infrastructure(settings, client_name="mf-bench")
                )
                service = await stack.enter_async_context(
                    running(infra, sweep_every=3600, view_runner=not separate_view)
                )
                if separate_view:
                    await stack.enter_async_context(view_process(infra))
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
