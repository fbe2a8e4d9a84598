"""The ops commands as `mf` registers them, runnable as a child process for CLI tests:

    python tests/integration/ops_cli.py replay workspace_view --diff

and `run_cli(infra, *args)`, which runs it against a test's Infrastructure."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

from infra.stack import child_environment

ROOT = Path(__file__).resolve().parents[2]


def projections(infra):
    from services.projects.app import view_projection
    from tests.integration.ledger_projection import LedgerProjection

    return {
        "workspace_view": view_projection(infra),
        "ledger": (LedgerProjection(), infra.schema("ledger")),
    }


def main() -> None:
    import typer

    from services.ops.commands import register

    app = typer.Typer()
    events = typer.Typer()
    app.add_typer(events, name="events")
    register(app, events, projections)
    app()


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


async def run_cli(infra, *args: str, timeout: float = 60, real_mf: bool = False) -> CliResult:
    """real_mf: run the installed `mf` (every projection of the system registered) instead
    of this file's test projections."""
    env = child_environment(infra) | {"PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    program = (
        [str(Path(sys.executable).with_name("mf"))]
        if real_mf
        else [sys.executable, str(Path(__file__))]
    )
    process = await asyncio.create_subprocess_exec(
        *program,
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
