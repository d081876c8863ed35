"""No dead code: vulture, configured in pyproject.toml ([tool.vulture]), finds nothing unused
outside tests/. Names only a framework or msgspec uses are in tests/vulture_whitelist.py."""

import subprocess
import sys

from tests.helpers import ROOT


def test_vulture_finds_no_unused_code():
    found = subprocess.run(
        [sys.executable, "-m", "vulture"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.splitlines()
    unused = [line for line in found if not line.startswith("tests/")]
    assert unused == [], "\n".join(unused)
