"""`mf bench` hands its arguments to `python -m bench` in the checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MF = Path(sys.executable).with_name("mf")


def test_mf_bench_passes_its_arguments_to_the_suite():
    result = subprocess.run(
        [str(MF), "bench", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m bench")
    assert "--only" in result.stdout and "--quick" in result.stdout


def test_mf_bench_refuses_an_unknown_option_with_the_suites_message():
    result = subprocess.run(
        [str(MF), "bench", "--no-such-option"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-option" in result.stderr
