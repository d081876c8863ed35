"""The global run limit and the bad-input sweep over HTTP, on a stack of their own."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.bad_inputs import BAD_QUERIES, write_cases
from tests.conftest import LocalStack
from tests.helpers import http

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(MAX_CONCURRENT_RUNS="5") as own:
        yield own


def start_together(api: str, how_many: int) -> Counter[int]:
    barrier = threading.Barrier(how_many)

    def start(i: int) -> int:
        barrier.wait()
        return http(
            "POST",
            f"{api}/api/runs/start",
            {"sensorIds": ["sensor-1"], "duration": 60, "interval": 1},
            **{"X-User": f"user-{i}"},
        )[0]

    with ThreadPoolExecutor(how_many) as pool:
        return Counter(pool.map(start, range(how_many)))


def test_fifty_simultaneous_starts_create_exactly_five_runs(stack):
    api = stack.base_url
    http("POST", f"{api}/api/runs/interrupt-all", **stack.admin)
    for _ in range(3):  # and again once the slots are given back
        assert start_together(api, 50) == Counter({201: 5, 409: 45})
        assert len(http("GET", f"{api}/api/runs/running")[1]) == 5
        can = http("GET", f"{api}/api/runs/can-start")[1]
        assert can == {"canStart": False, "currentRunning": 5, "maxAllowed": 5, "available": 0}
        assert http("POST", f"{api}/api/runs/interrupt-all", **stack.admin)[1]["interrupted"] == 5
        assert http("GET", f"{api}/api/runs/can-start")[1]["currentRunning"] == 0


def test_racing_finishes_give_each_slot_back_once(stack):
    api = stack.base_url
    http("POST", f"{api}/api/runs/interrupt-all", **stack.admin)
    run_id = http("POST", f"{api}/api/runs/start", {"sensorIds": ["s"], "duration": 60, "interval": 1})[1][
        "id"
    ]
    barrier = threading.Barrier(21)

    def finish(_: int) -> int:
        barrier.wait()
        return http("POST", f"{api}/api/runs/{run_id}/finish")[0]

    def interrupt(_: int) -> int:
        barrier.wait()
        return http("POST", f"{api}/api/runs/interrupt-all", **stack.admin)[0]

    with ThreadPoolExecutor(21) as pool:
        finishes = [pool.submit(finish, i) for i in range(20)]
        interrupted = pool.submit(interrupt, 0)
        results = Counter(f.result() for f in finishes)
        assert interrupted.result() == 200
    assert results[200] <= 1 and results[200] + results[409] == 20
    assert http("GET", f"{api}/api/runs/can-start")[1]["currentRunning"] == 0


def test_bad_input_sweep_over_http_gets_no_5xx(stack):
    api = stack.base_url
    run = http("POST", f"{api}/api/runs/start", {"sensorIds": ["s"], "duration": 60, "interval": 1})[1]
    failures: list[str] = []
    cases = list(write_cases())

    def send(case: tuple[str, str, str, dict[str, str]]) -> None:
        method, path, body, headers = case
        status, payload, _ = http(method, f"{api}{path}", body.encode(), **headers)
        if status >= 500 or (status >= 400 and not (isinstance(payload, dict) and payload.get("message"))):
            failures.append(
                f"{method} {path} {body[:60]!r} {headers} -> {status} {json.dumps(payload)[:200]}"
            )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, cases))
    for path in BAD_QUERIES:
        status, payload, _ = http("GET", f"{api}{path}")
        if not 400 <= status < 500 or not payload.get("message"):
            failures.append(f"GET {path} -> {status} {payload}")
    http("POST", f"{api}/api/runs/{run['id']}/finish")
    assert not failures, "\n".join(failures[:20])
    assert len(cases) > 1000
