"""Figure 3: commands through the HTTP API (FastAPI + uvicorn, token check, handlers, group
commit, durable NATS as shipped) against a hello-world endpoint of the same server stack
(`GET /health`), in the same run. Load comes from bench.http_load in its own process.

Per run: the maximum rate of each (closed loop, `connections` keep-alive connections, each
with its own projects), then commands at half their maximum rate (open loop) for p50/p99.
The server's CPU per request (this process: API, handlers, projection runner) is noted too:
on a shared machine it moves less than the rates do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench import stack, workload
from bench.report import Report, Result, median


@dataclass
class HttpSizes:
    seconds: float
    connections: int
    projects: int


async def measure(report: Report, sizes: HttpSizes, runs: int, database_url: str) -> None:
    # As infra/compose.yaml deploys it: the view projection in its own process.
    async with stack.projects_service(True, database_url, separate_view=True) as (
        infra,
        service,
        _nats,
    ):
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
        hello_cpu, command_cpu = [], []
        for _ in range(runs):
            h, cpu = await _timed(service.url, base | {"mode": "closed", "requests": hello})
            hello_cpu.append(cpu)
            c, cpu = await _timed(service.url, base | {"mode": "closed", "requests": commands})
            command_cpu.append(cpu)
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
            "durable config, view projection in its own process)",
            rate,
            "/s",
            "hello world (GET /health) of the same stack",
            hello_rate,
            "≥ 0.5 x hello world",
            rate >= 0.5 * hello_rate,
            command_rates,
            note=f"server CPU per request: command {median(command_cpu):,.0f} µs, hello "
            f"{median(hello_cpu):,.0f} µs ({median(hello_cpu) / median(command_cpu):.2f})",
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


async def _timed(url: str, plan: dict) -> tuple[dict, float]:
    """The load generator's result, and this process's CPU µs per request meanwhile."""
    started = time.process_time()
    result = await stack.load_process(url, plan)
    return result, (time.process_time() - started) * 1e6 / max(result["count"], 1)
