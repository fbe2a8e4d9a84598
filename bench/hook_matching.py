"""Figure 6: matching — the matching team's own benchmark (bench/matching_latency.py), run
as it is, in its own process, in this same run; its printed figures are read back.

HOOK: if bench/matching_latency.py is missing, or prints its results in another shape, the
figure is reported as not run, with the reason; adapt `_PATTERNS` (not their benchmark).
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys

from bench.report import Report, Result

MODULE = "bench.matching_latency"
QUICK_ARGS = ["--members", "20000", "--spaces", "200", "--warmup", "100", "--projects", "100"]
_PATTERNS = {
    "p50": re.compile(r"p50 ([\d.]+)"),
    "p95": re.compile(r"p95 ([\d.]+)"),
    "p99": re.compile(r"p99 ([\d.]+)"),
    "memory": re.compile(r"directory \+ index ~([\d.]+) MB"),
    "directory": re.compile(r"directory: (\d+) spaces, (\d+) members"),
}


async def measure(report: Report, quick: bool) -> None:
    if importlib.util.find_spec(MODULE) is None:
        report.failures.append(f"6 (matching): {MODULE} not found — the hook is waiting for it")
        return
    report.record_load("figure 6 start")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        MODULE,
        *(QUICK_ARGS if quick else []),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    output, errors = await process.communicate()
    report.record_load("figure 6 end")
    text = output.decode()
    found = {name: pattern.search(text) for name, pattern in _PATTERNS.items()}
    if process.returncode != 0 or not found["p95"]:
        report.failures.append(
            f"6 (matching): {MODULE} exited {process.returncode} without a p95 I can read: "
            f"{(text + errors.decode())[-500:]!r}"
        )
        return
    p95 = float(found["p95"].group(1))
    spaces, members = found["directory"].groups() if found["directory"] else ("?", "?")
    memory = f"; directory + index ~{found['memory'].group(1)} MB RSS" if found["memory"] else ""
    report.add(
        Result(
            "6",
            f"Matching: 5-role project over {int(members):,} members in {spaces} spaces "
            f"({MODULE}), p95",
            p95,
            "ms",
            "-",
            None,
            "p95 < 20 ms",
            p95 < 20,
            [p95],
            note=f"p50 {found['p50'].group(1)} ms, p99 {found['p99'].group(1)} ms{memory}; "
            "their section below has the details",
            higher_is_better=False,
        )
        if members != "?"
        else Result("6", f"Matching ({MODULE}), p95", p95, "ms", target="p95 < 20 ms", met=p95 < 20)
    )
