"""Figure 3: commands through the HTTP API (FastAPI + uvicorn, token check, handlers, group
commit, durable NATS as shipped) against a hello-world endpoint of the same server stack
(`GET /health`), in the same run. Load comes from bench.http_load in its own process.

Per run: the maximum rate of each (closed loop, `connections` keep-alive connections, each
with its own projects), then commands at half their maximum rate (open loop) for p50/p99.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import stack, workload
from bench.report import Report, Result, median


@dataclass
class HttpSizes:
    seconds: float
    connections: int
    projects: int


async def measure(report: Report, sizes: HttpSizes, runs: int, database_url: str) -> None:
    async with stack.projects_service(True, database_url) as (infra, service, _nats):
        await workload.network(service.handlers)
        projects = await workload.staffed_projects(service.handlers, sizes.projects)
        bearer = stack.token(infra, "mage", "coordinator", "ada")
        headers = {"Authorization": f"Bearer {bearer}"}
        note = {"note": "frames cut and welded, bags being stitched"}
        commands = [["POST", f"/projects/{p}/progress", note] for p in projects]
        hello = [["GET", "/health", None]]
        base = {"seconds": sizes.seconds, "connections": sizes.connections, "headers": headers}
        report.record_load("figure 3 start")
        hello_rates, command_rates, p50s, p99s, half_rates = [], [], [], [], []
        for _ in range(runs):
            h = await stack.load_process(service.url, base | {"mode": "closed", "requests": hello})
            c = await stack.load_process(
                service.url, base | {"mode": "closed", "requests": commands}
            )
            assert c["ok"] == c["count"], c
            half = await stack.load_process(
                service.url,
                base | {"mode": "open", "rate": c["rate"] / 2, "requests": commands},
            )
            hello_rates.append(h["rate"])
            command_rates.append(c["rate"])
            p50s.append(half["p50_ms"])
            p99s.append(half["p99_ms"])
            half_rates.append(half["rate"])
        report.record_load("figure 3 end")
    rate, hello_rate = median(command_rates), median(hello_rates)
    report.add(
        Result(
            "3",
            f"HTTP commands/s (POST /projects/{{id}}/progress, {sizes.connections} connections, "
            "durable config)",
            rate,
            "/s",
            "hello world (GET /health) of the same stack",
            hello_rate,
            "≥ 0.5 x hello world",
            rate >= 0.5 * hello_rate,
            command_rates,
        )
    )
    p99 = median(p99s)
    report.add(
        Result(
            "3b",
            f"HTTP command latency at half load ({median(half_rates):,.0f}/s): p99 "
            f"(p50 {median(p50s):.1f} ms)",
            p99,
            "ms",
            "-",
            None,
            "p99 < 20 ms",
            p99 < 20,
            p99s,
            higher_is_better=False,
        )
    )
