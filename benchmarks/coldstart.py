"""Cold starts side by side: this app against the design it replaces, and boto3 against botocore.

A cold start here is what a new Lambda container does before it answers: import the handler
(with whatever it creates at import), then serve the first request, an API Gateway proxy
event for `GET /api/runs/can-start`. Each measurement runs in a fresh interpreter
(`coldstart_probe.py`), timed from its first line; the interpreter's own start-up, the same
for both, is left out. The two designs alternate, run after run, against the same DynamoDB
endpoint, so a busy machine slows both alike; the ratio is of the medians.

The reference (`reference_handler.py`) is what the seed's handlers did: boto3, a DynamoDB and
a CloudWatch client at import, one Scan of the runs table for the first request.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.lambda_event import api_event

ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).with_name("coldstart_probe.py")
ROUTE = "/api/runs/can-start"


def _probe(kind: str, env: Mapping[str, str], *args: str) -> dict[str, float]:
    command = [sys.executable, "-I", str(PROBE), kind, *args, str(ROOT)]
    result = subprocess.run(command, env=dict(env), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"cold start probe {kind} failed:\n{result.stdout}{result.stderr}")
    measured: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def _summary(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(row[key] for row in rows), 1) for key in rows[0]}


def compare(env: Mapping[str, str], runs: int = 10) -> dict[str, Any]:
    """`runs` cold starts of each design, alternated (app first on even runs)."""
    with tempfile.TemporaryDirectory(prefix="coldstart-") as scratch:
        event_file = Path(scratch) / "event.json"
        event_file.write_text(json.dumps(api_event("GET", ROUTE)))
        measured: dict[str, list[dict[str, float]]] = {"app": [], "reference": []}
        for run in range(runs):
            order = ("app", "reference") if run % 2 == 0 else ("reference", "app")
            for kind in order:
                measured[kind].append(_probe(kind, env, str(event_file)))
    app, reference = _summary(measured["app"]), _summary(measured["reference"])
    return {
        "runs": runs,
        "route": f"GET {ROUTE}",
        "app": app,
        "reference": reference,
        "ratio": round(app["total_ms"] / reference["total_ms"], 3),
        "cpu_ratio": round(app["cpu_ms"] / reference["cpu_ms"], 3),
        "samples": measured,
    }


def sdk_clients(env: Mapping[str, str], runs: int = 10) -> dict[str, Any]:
    """Import + create one DynamoDB client: boto3, botocore, and botocore as the app sets it up
    (`init_ms` is the import, `first_request_ms` the client's creation)."""
    kinds = ("boto3", "botocore", "app-client")
    measured: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for run in range(runs):
        for kind in kinds[run % 3 :] + kinds[: run % 3]:
            measured[kind].append(_probe(kind, env))
    return {kind: _summary(rows) for kind, rows in measured.items()}
