"""`mf replay --diff`: a rebuilt shadow compared row by row with the live view. Zero
differences on an intact view; exactly the tampered rows on a tampered one."""

from __future__ import annotations

from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from services.ops.diff import diff_projection, render
from services.projects.app import view_projection
from tests.integration.ops_cli import run_cli
from tests.integration.ops_network import seed_network


async def test_an_intact_view_has_zero_differences_and_a_tampered_one_exactly_its_own(
    infrastructure,
):
    network = await seed_network(infrastructure.store, projects=4)
    projection, schema = view_projection(infrastructure)
    admin = await create_pool(infrastructure.database_url, "public", max_size=4)
    try:
        await ProjectionRunner(projection, infrastructure.store, admin, schema).catch_up()
        report = await diff_projection(projection, infrastructure.store, admin, schema)
        assert report.identical
        assert report.position == await infrastructure.store.last_sequence()
        assert {t.table for t in report.tables} == {
            "workspaces",
            "members",
            "projects",
            "invitations",
            "timeline",
        }
        assert render(report)[-1] == "0 differences: the live projection is exactly the log."

        cli = await run_cli(infrastructure, "replay", "workspace_view", "--diff")
        assert cli.exit_code == 0, cli.stderr
        assert "0 differences" in cli.stdout

        delivered, declined = network.projects[3], network.projects[1]
        async with admin.acquire() as connection:
            await connection.execute(f'SET search_path TO "{schema}"')
            lost = await connection.fetchval(
                "DELETE FROM invitations WHERE project_id = $1 AND role_id = 'frame'"
                " RETURNING invitation_id",
                delivered,
            )
            await connection.execute(
                "UPDATE projects SET status = 'cancelled' WHERE project_id = $1", declined
            )
            await connection.execute(
                "INSERT INTO timeline SELECT project_id, sequence + 100000, occurred_at,"
                " recorded_at, type, actor, summary FROM timeline"
                " WHERE project_id = $1 ORDER BY sequence DESC LIMIT 1",
                delivered,
            )

        report = await diff_projection(projection, infrastructure.store, admin, schema)
        assert not report.identical and report.difference_count == 3
        found = {(d.table, d.kind): d for d in report.differences}
        assert set(found) == {
            ("invitations", "missing_in_live"),
            ("projects", "changed"),
            ("timeline", "missing_in_rebuild"),
        }
        assert found[("invitations", "missing_in_live")].key == {"invitation_id": lost}
        changed = found[("projects", "changed")]
        assert changed.key == {"project_id": declined} and changed.columns == ["status"]
        assert (changed.live["status"], changed.rebuilt["status"]) == ("cancelled", "proposed")
        assert found[("timeline", "missing_in_rebuild")].key["project_id"] == delivered

        cli = await run_cli(infrastructure, "replay", "workspace_view", "--diff")
        assert cli.exit_code == 1
        assert "3 differences." in cli.stdout
        assert 'status: live "cancelled" != rebuilt "proposed"' in cli.stdout
        assert f"+ invitations [invitation_id={lost}] missing in live" in cli.stdout
    finally:
        await admin.close()


async def test_replay_from_the_cli_swaps_with_a_progress_report(infrastructure):
    await seed_network(infrastructure.store, projects=2)
    projection, schema = view_projection(infrastructure)
    admin = await create_pool(infrastructure.database_url, "public", max_size=4)
    try:
        await ProjectionRunner(projection, infrastructure.store, admin, schema).catch_up()
        cli = await run_cli(infrastructure, "replay", "workspace_view", "--batch-size", "5")
        assert cli.exit_code == 0, cli.stderr
        head = await infrastructure.store.last_sequence()
        assert f"generation 2 is live in {schema} at sequence {head}" in cli.stdout
        assert "events/s" in cli.stderr and f"{head}/{head}" in cli.stderr
        report = await diff_projection(projection, infrastructure.store, admin, schema)
        assert report.identical
        unknown = await run_cli(infrastructure, "replay", "nothing")
        assert unknown.exit_code != 0 and "unknown projection 'nothing'" in unknown.stderr
    finally:
        await admin.close()
