"""`make bench`: cold import cost, and ingest latency/throughput over HTTP against the local stack.

Numbers from the local stack measure this app plus chalice local plus moto on
one machine; on AWS, DynamoDB and API Gateway set the latency instead. They
are for comparing versions of the code, not for predicting production.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cold_import_ms(repeats: int) -> list[float]:
    """Time `import app` in fresh interpreters, as a Lambda cold start would."""
    code = "import time; t = time.perf_counter(); import app; print((time.perf_counter() - t) * 1000)"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    return [
        float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True).stdout)
        for _ in range(repeats)
    ]  # fmt: skip


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def post(url: str, body: bytes, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        if response.status != 201:
            raise RuntimeError(f"unexpected status {response.status}")
    return (time.perf_counter() - started) * 1000


def ingest(api: str, requests: int, concurrency: int, batch: int) -> dict[str, float]:
    start = urllib.request.Request(
        f"{api}/api/runs/start",
        data=json.dumps({"sensorIds": ["sensor-1"], "duration": 3600, "interval": 1}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-User": "bench"},
    )
    with urllib.request.urlopen(start) as response:
        run_id = json.loads(response.read())["runId"]
    headers = {"Content-Type": "application/json", "X-User": "bench", "X-Run-Id": run_id}
    one = {"sensorId": "sensor-1", "reading": 21.5, "type": "temperature"}
    body = json.dumps([one] * batch if batch > 1 else one).encode()
    try:
        began = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = list(
                pool.map(lambda _: post(f"{api}/api/sensors/data", body, headers), range(requests))
            )
        elapsed = time.perf_counter() - began
    finally:
        finish = urllib.request.Request(f"{api}/api/runs/{run_id}/finish", data=b"{}", method="POST",
                                        headers={"Content-Type": "application/json"})  # fmt: skip
        urllib.request.urlopen(finish).read()
    return {
        "requests": requests,
        "readings": requests * batch,
        "requests_per_s": requests / elapsed,
        "readings_per_s": requests * batch / elapsed,
        "p50_ms": percentile(latencies, 0.50),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    imports = cold_import_ms(5)
    print(f"cold `import app`: median {statistics.median(imports):.0f} ms (min {min(imports):.0f}, n=5)")

    sys.path.insert(0, str(ROOT))
    from tests.conftest import LocalStack

    with LocalStack() as stack:
        for batch in (1, 25):
            requests = args.requests if batch == 1 else args.requests // 5
            result = ingest(stack.base_url, requests, args.concurrency, batch)
            shape = "single" if batch == 1 else f"batch of {batch}"
            print(
                f"POST /api/sensors/data x{result['requests']} ({shape}, "
                f"{args.concurrency} concurrent): {result['requests_per_s']:.0f} req/s, "
                f"{result['readings_per_s']:.0f} readings/s, p50 {result['p50_ms']:.1f} ms, "
                f"p95 {result['p95_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
