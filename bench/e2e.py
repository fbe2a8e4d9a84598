"""Figure 5: from a command accepted over HTTP to the change visible in the workspace view
and pushed on its SSE stream, at a fixed command rate (default 1,000/s), durable config.

`workspaces` workspaces each coordinate `projects_per_workspace` staffed projects (partner
from the same workspace, so each view holds only its own projects); one SSE stream per
workspace; commands (progress notes) spread over all projects. The client is
bench.e2e_client in its own process.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import stack, workload
from bench.report import Report, Result
from contracts import commands as requests
from services.projects import domain


@dataclass
class E2eSizes:
    rate: int
    seconds: float
    workspaces: int
    projects_per_workspace: int


async def _seed(handlers, workspaces: int, per_workspace: int) -> list[tuple[str, str, str]]:
    """[(workspace_id, coordinator member, project_id)]"""
    projects = []
    for index in range(workspaces):
        workspace_id, coordinator, partner = f"ws{index}", f"c{index}", f"p{index}"
        await handlers.register_workspace(
            requests.RegisterWorkspace(
                workspace_id=workspace_id,
                name=f"Space {index}",
                city="Milano",
                country="IT",
                location={"lat": 45.46, "long": 9.19},
                languages=["en"],
                timezone="Europe/Rome",
            ),
            workload.meta(workload.OPS),
        )
        for member_id, capability in ((coordinator, "frame-welding"), (partner, "leather-sewing")):
            await handlers.join_workspace(
                workspace_id,
                requests.JoinWorkspace(
                    member_id=member_id,
                    name=member_id,
                    kind="artisan",
                    capabilities=[{"capability": capability, "level": 4}],
                    weekly_capacity={"hasNumericalValue": 20},
                    languages=["en"],
                ),
                workload.meta(domain.Actor(workspace_id, "coordinator")),
            )
        lead = domain.Actor(workspace_id, "coordinator", coordinator)
        for _ in range(per_workspace):
            created = await handlers.propose(workload.proposal(), workload.meta(lead))
            invited = await handlers.invite(
                created.aggregate_id,
                requests.InvitePartner(role_id="bags", member_id=partner),
                workload.meta(lead),
            )
            await handlers.accept(
                created.aggregate_id,
                invited.events[0].invitation_id,
                workload.meta(domain.Actor(workspace_id, "member", partner)),
            )
            projects.append((workspace_id, coordinator, created.aggregate_id))
    return projects


async def measure(report: Report, sizes: E2eSizes, database_url: str) -> None:
    # Deployed as a loaded site would run it: the view projection in its own process.
    async with stack.projects_service(True, database_url, separate_view=True) as (
        infra,
        service,
        _nats,
    ):
        seeded = await _seed(service.handlers, sizes.workspaces, sizes.projects_per_workspace)
        tokens = {
            (workspace_id, member): stack.token(infra, workspace_id, "coordinator", member)
            for workspace_id, member, _ in seeded
        }
        plan = {
            "seconds": sizes.seconds,
            "connections": 64,  # enough that ~30 ms answers under load still keep the rate
            "commands": [[w, tokens[w, m], p] for w, m, p in seeded],
            "streams": sorted({(w, tokens[w, m]) for w, m, _ in seeded}),
        }
        report.record_load("figure 5 start")
        at_target = await stack.load_process(
            service.url, plan | {"rate": sizes.rate}, "bench.e2e_client"
        )
        relaxed = await stack.load_process(
            service.url, plan | {"rate": sizes.rate // 4}, "bench.e2e_client"
        )
        report.record_load("figure 5 end")
    for figure, offered, result in (("5", sizes.rate, at_target), ("5b", sizes.rate // 4, relaxed)):
        p99 = result["p99_ms"]
        report.add(
            Result(
                figure,
                f"Command accepted → visible in the view and pushed on SSE (view projection in "
                f"its own process), {offered:,} "
                f"commands/s offered, {result['rate']:,.0f}/s served ({sizes.workspaces} "
                f"workspaces, one stream each; p50 {result['p50_ms']:.1f} ms, max "
                f"{result['max_ms']:.0f} ms): p99",
                p99,
                "ms",
                "-",
                None,
                "p99 < 25 ms at 1,000/s" if figure == "5" else "-",
                (p99 < 25 and result["unmatched"] == 0 and result["rate"] >= 0.95 * offered)
                if figure == "5"
                else None,
                [p99],
                note=f"{result['commands']:,} commands, {result['unmatched']} never seen on SSE",
                higher_is_better=False,
            )
        )
