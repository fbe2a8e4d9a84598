"""Results, the machine they were measured on, and the table written to docs/benchmarks.md.

Only the part between the BEGIN/END markers is rewritten; anything else in the file (the
matching team's own section, for one) is kept as it is.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BEGIN = "<!-- bench:begin (written by `python -m bench`; edit bench/, not this part) -->"
END = "<!-- bench:end -->"


@dataclass
class Result:
    figure: str  # "1", "1b", "2", ...
    what: str
    value: float | None  # the median
    unit: str
    reference: str = ""  # the raw limit or peer it is measured against, same run
    reference_value: float | None = None
    target: str = ""
    met: bool | None = None
    runs: list[float] = field(default_factory=list)
    note: str = ""
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.reference_value:
            return None
        return self.value / self.reference_value

    def as_dict(self) -> dict:
        return asdict(self) | {"ratio": self.ratio}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):  # not Linux: ask platform
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def _command_version(argv: list[str]) -> str:
    try:
        output = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return output.strip().splitlines()[0] if output.strip() else "unknown"


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


@dataclass
class Machine:
    cpu: str
    cores: int
    memory: str
    kernel: str
    python: str
    nats_server: str
    postgres: str
    packages: dict[str, str]

    @classmethod
    def describe(cls, postgres_version: str) -> Machine:
        from infra.embedded import nats_server_binary

        return cls(
            cpu=_cpu_model(),
            cores=os.cpu_count() or 0,
            memory=_memory(),
            kernel=f"{platform.system()} {platform.release()}",
            python=sys.version.split()[0],
            nats_server=_command_version([str(nats_server_binary()), "--version"]),
            postgres=postgres_version,
            packages={
                name: _package_version(name)
                for name in (
                    "nats-py",
                    "asyncpg",
                    "fastapi",
                    "uvicorn",
                    "pydantic",
                    "eventsourcing",
                    "psycopg",
                )
            },
        )


@dataclass
class Report:
    machine: Machine
    started: datetime
    mode: str  # "full" or "quick"
    runs: int
    results: list[Result] = field(default_factory=list)
    loads: list[tuple[str, str]] = field(default_factory=list)  # (when, uptime load)
    notes: list[str] = field(default_factory=list)  # what limits each figure, profiles
    failures: list[str] = field(default_factory=list)
    command: str = "python -m bench"

    def add(self, result: Result) -> Result:
        self.results.append(result)
        return result

    def record_load(self, when: str) -> None:
        self.loads.append((when, load_average()))

    def markdown(self) -> str:
        m = self.machine
        packages = ", ".join(f"{k} {v}" for k, v in m.packages.items())
        lines = [
            BEGIN,
            "",
            f"Measured {self.started:%Y-%m-%d %H:%M} UTC, `{self.command}` ({self.mode} sizes), "
            f"median of {self.runs} run(s) per figure, every figure and its reference in the "
            "same run on the same machine.",
            "",
            "### Machine",
            "",
            f"- CPU: {m.cpu}, {m.cores} cores; RAM {m.memory}; {m.kernel}",
            f"- nats-server {m.nats_server.removeprefix('nats-server: ')} (embedded, own "
            f"process per configuration); PostgreSQL {m.postgres}; Python {m.python}",
            f"- {packages}",
            "- Load average (1/5/15 min) while measuring: "
            + "; ".join(f"{when}: {load}" for when, load in self.loads),
            "",
            "### Results",
            "",
            "| # | What | Result | Raw limit / peer (same run) | Ratio | Target | Met |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.results:
            reference = r.reference
            if r.reference_value is not None:
                reference += ": " + _value(r.reference_value, r.unit)
            lines.append(
                f"| {r.figure} | {r.what} | {_value(r.value, r.unit)} | {reference} | "
                f"{_ratio(r.ratio)} | {r.target or '-'} | {_met(r.met)} |"
            )
        if any(r.note for r in self.results):
            lines += ["", "Notes on individual rows:", ""]
            lines += [f"- {r.figure} {r.what}: {r.note}" for r in self.results if r.note]
        if self.notes:
            lines += ["", "### What limits each figure (measured in this run)", ""]
            lines += [f"- {note}" for note in self.notes]
        if self.failures:
            lines += ["", "### Figures that did not run", ""]
            lines += [f"- {failure}" for failure in self.failures]
        lines += ["", "Runs (every value, for the medians above):", "", "```"]
        for r in self.results:
            if r.runs:
                values = ", ".join(_short(v) for v in r.runs)
                lines.append(f"{r.figure:>3} {r.what[:60]:<60} {values}")
        lines += ["```", "", END]
        return "\n".join(lines)


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if value != value:  # NaN
        return "n/a"
    return f"{_short(value)} {unit}".strip()


def _ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def _met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[met]


def write(path: Path, report: Report, preamble: str) -> None:
    """Replace the generated part of `path` (create it with `preamble` when missing)."""
    generated = report.markdown()
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = before + generated + after
    elif text:
        text = re.sub(r"\s*$", "\n\n", text, count=1) + generated + "\n"
    else:
        text = preamble + "\n" + generated + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def now() -> datetime:
    return datetime.now(UTC)
