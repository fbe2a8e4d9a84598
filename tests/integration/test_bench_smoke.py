"""`python -m bench` runs every figure end to end and writes a well-formed table.
Tiny sizes: this checks the suite works, not how fast anything is."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (\d+[a-z]?) \| .+ \| .+ \| .+ \| .+ \| .+ \| (yes|\*\*no\*\*|-) \|$")


def test_the_suite_writes_a_table_with_every_figure(tmp_path, database_url):
    figures = ["1", "2", "3", "4", "5", "6", "7"]
    if importlib.util.find_spec("eventsourcing") is not None:  # the optional bench extra
        figures.append("8")
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\n## Matching\n\nkept as it is\n")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--smoke", "--only", ",".join(figures)),
            *("--output", str(output), "--json", str(tmp_path / "results.json")),
        ],
        cwd=ROOT,
        env={**os.environ, "MF_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = output.read_text()
    assert "## Matching\n\nkept as it is" in text  # other sections survive a rewrite
    assert "### Machine" in text and "nats-server" in text and "PostgreSQL" in text
    rows = [
        ROW.match(line) for line in text.splitlines() if line.startswith("| ") and "---" not in line
    ]
    found = {m.group(1).rstrip("bcdm") for m in rows if m}
    assert set(figures) <= found, text
    assert (tmp_path / "results.json").exists()
