"""`mf matching ...`: read proposals, check the matcher's health, prove determinism.

Talks to the servers of the running system (MF_NATS_URL / MF_DATABASE_URL, or the ones
`mf up` started). Rebuilding the directory is `mf replay matching_directory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
import typer

from contracts.matching import CandidatesProposed
from contracts.subjects import SubjectScheme
from infra.jetstream_store import JetStreamEventStore
from infra.logging import configure_logging
from infra.nats_connection import connect_nats
from infra.postgres import quote_identifier
from infra.settings import Settings
from infra.stack import resolve_urls
from services.matching.replay import verify_replay
from services.matching.taxonomy import load_taxonomy
from services.matching.weights import active_weights, load_weights

app = typer.Typer(
    help="Partner proposals: read them, check the matcher, replay it.", no_args_is_help=True
)

AsJson = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]


def _settings() -> Settings:
    """Settings, with logs going to stderr (stdout is for the command's output)."""
    settings = Settings()
    configure_logging(settings.log_format, "warning")
    return settings


@contextlib.asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[JetStreamEventStore]:
    nats_url, _ = resolve_urls(settings)
    if nats_url is None:
        raise typer.BadParameter("no NATS: set MF_NATS_URL or start `mf up` first")
    client = await connect_nats(nats_url, name="mf-matching-cli")
    try:
        yield JetStreamEventStore(client, settings.stream, SubjectScheme(settings.subject_root))
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def _print_proposal(recorded_sequence: int, proposal: CandidatesProposed) -> None:
    typer.echo(
        f"proposal at {recorded_sequence} for {proposal.project_id} "
        f"(trigger {proposal.trigger_type or '?'} at {proposal.trigger_sequence}, "
        f"weights {proposal.weights_version}, algorithm {proposal.algorithm_version})"
    )
    for role in proposal.proposals:
        typer.echo(f"  {role.role_id} ({role.capability}), open seats {role.open_seats}")
        if role.no_candidates_reason:
            typer.echo(f"    no candidates: {role.no_candidates_reason}")
        for candidate in role.candidates:
            factors = " ".join(f"{f.factor}={f.value:.2f}" for f in candidate.factors)
            distance = "?" if candidate.distance_km is None else f"{candidate.distance_km:g} km"
            typer.echo(
                f"    {candidate.rank:>2}. {candidate.member_id} ({candidate.workspace_id}, "
                f"{candidate.matched_capability} L{candidate.level}, {distance}) "
                f"{candidate.score:.3f}  {factors}"
            )
    if proposal.team:
        team = ", ".join(f"{m.role_id}: {m.member_id}" for m in proposal.team.members)
        state = "complete" if proposal.team.complete else "incomplete"
        typer.echo(
            f"  team ({state}, {proposal.team.workspaces} spaces, "
            f"total {proposal.team.total_score:.3f}): {team or '-'}"
        )


@app.command("proposals")
def proposals(
    project_id: str,
    all_: Annotated[bool, typer.Option("--all", help="Every proposal, not just the last.")] = False,
    as_json: AsJson = False,
) -> None:
    """The matcher's proposals for a project, as the log holds them, with explanations."""

    async def main() -> None:
        async with _store(_settings()) as store:
            history = await store.load("matching", project_id)
        found = [r for r in history.events if isinstance(r.event, CandidatesProposed)]
        if not found:
            typer.echo(f"no proposal for {project_id} yet", err=True)
            raise typer.Exit(1)
        for recorded in found if all_ else found[-1:]:
            if as_json:
                document = {"sequence": recorded.sequence, **recorded.event.data()}
                typer.echo(json.dumps(document, ensure_ascii=False))
            else:
                _print_proposal(recorded.sequence, recorded.event)

    asyncio.run(main())


@app.command("status")
def status(as_json: AsJson = False) -> None:
    """Directory position against the log, directory size, outbox by status."""

    async def main() -> dict:
        settings = _settings()
        _, database_url = resolve_urls(settings)
        if database_url is None:
            raise typer.BadParameter("no database: set MF_DATABASE_URL or start `mf up` first")
        outbox = quote_identifier(settings.schema("matching"))
        directory = quote_identifier(settings.schema("matching_directory"))
        async with _store(settings) as store:
            head = await store.last_sequence()
        connection = await asyncpg.connect(database_url)
        try:
            if not await connection.fetchval(f"SELECT to_regclass('{directory}.directory_state')"):
                raise typer.BadParameter("the matching service has not run on this database yet")
            state = await connection.fetchrow(
                f"SELECT position, clock FROM {directory}.directory_state"
            )
            counts = {
                table: await connection.fetchval(f"SELECT count(*) FROM {directory}.{table}")
                for table in ("workspaces", "members", "active_projects", "proposal_history")
            }
            by_status = dict(
                await connection.fetch(
                    f"SELECT status, count(*) FROM {outbox}.outbox GROUP BY status ORDER BY 1"
                )
            )
        finally:
            await connection.close()
        return {
            "log_head": head,
            "directory_position": state["position"],
            "log_clock": state["clock"].isoformat() if state["clock"] else None,
            **counts,
            "outbox": by_status,
        }

    result = asyncio.run(main())
    if as_json:
        typer.echo(json.dumps(result))
        return
    for key, value in result.items():
        typer.echo(f"{key:<20} {value}")


@app.command("verify-replay")
def verify(
    weights: Annotated[
        str | None, typer.Option(help="Weights version (default: the network's active one).")
    ] = None,
    network: Annotated[str, typer.Option(help="Network whose active weights to use.")] = "default",
) -> None:
    """Replay the whole log into a fresh in-memory directory and check that every logged
    proposal made with these weights is reproduced exactly. Exit code 1 if one is not."""

    async def main():
        chosen = load_weights(weights) if weights else active_weights(network)
        async with _store(_settings()) as store:
            return await verify_replay(store, load_taxonomy(), chosen)

    report = asyncio.run(main())
    typer.echo(
        f"{report.events} events replayed with weights {report.weights_version}: "
        f"{report.reproduced} proposals reproduced exactly, {len(report.differing)} differ, "
        f"{len(report.unexplained)} unexplained, {report.other_weights} made with other "
        f"weights, {report.not_in_log} recomputed but never published (stale or pending)"
    )
    for trigger_id, (project_id, difference) in sorted(report.differing.items()):
        typer.echo(f"  differs: trigger {trigger_id} of {project_id}: {difference}")
    for trigger_id in report.unexplained:
        typer.echo(f"  unexplained: a proposal for trigger {trigger_id}")
    if not report.ok:
        raise typer.Exit(1)
