"""schemathesis against the local stack, from the OpenAPI document the stack serves.

Every operation, with schemathesis's phases (examples, coverage, fuzzing, stateful: the
document's links chain a started run into its reads, readings and finish), a fixed seed,
and the checks: no 5xx, only documented status codes and content types, bodies that
match the documented schemas. The run stops by itself (bounded examples per operation);
the test fails on any failed check or if fewer than MIN_REQUESTS requests were sent, and
prints the counts per check.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from schemathesis.engine import Status, events, from_schema

from chalicelib import http
from iot_playground import openapi
from tests.conftest import LocalStack

pytestmark = pytest.mark.e2e

SEED = 20261122
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
MAX_EXAMPLES = 20  # per operation and phase
# An alias is the route it names (app.py stacks both paths on one handler; tests/test_readings_api.py
# and tests/test_exactly_once.py hold it to that): fuzzed once, under its /api path.
ALIASES = ["/sensors/data"]
MIN_REQUESTS = 1000
# Methods a path does not serve, sent to each (the app answers 405, OPTIONS is a CORS
# preflight; TRACE and QUERY are answered 405 by `make run`'s server itself, and tested in
# tests/test_http_surface.py).
UNEXPECTED_METHODS = ["get", "put", "post", "delete", "options", "patch"]


@dataclass
class Tally:
    requests: int = 0
    per_operation: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    checks: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, recorder: Any) -> None:
        self.requests += len(recorder.interactions)
        self.per_operation[recorder.label] += len(recorder.interactions)
        statuses = self.statuses.setdefault(recorder.label, Counter())
        statuses.update(
            i.response.status_code for i in recorder.interactions.values() if i.response is not None
        )
        for nodes in recorder.checks.values():
            for node in nodes:
                self.checks[node.name] += 1
                if node.status != Status.SUCCESS:
                    self.failed[node.name] += 1
                    info = node.failure_info
                    detail = (
                        f"{info.failure.title}: {info.failure.message}\n{info.code_sample}" if info else ""
                    )
                    self.failures.append(f"{recorder.label} [{node.name}] {detail}")

    def report(self) -> str:
        lines = [f"schemathesis: {self.requests} requests"]
        lines += [f"  {name}: {self.checks[name]} checked, {self.failed[name]} failed" for name in CHECKS]
        for label, count in sorted(self.per_operation.items()):
            answers = ", ".join(
                f"{status} x{n}" for status, n in sorted(self.statuses.get(label, Counter()).items())
            )
            lines.append(f"  {label}: {count} requests ({answers})")
        return "\n".join(lines)


@pytest.fixture(scope="module")
def fuzz_stack() -> Iterator[LocalStack]:
    """A stack of its own: the fuzzing starts, finishes and interrupts runs. Room for more runs
    than the default limits, so that the stateful phase gets runs to read, post readings to
    and finish once the earlier phases have started theirs (the limits answer 409 still)."""
    with LocalStack(MAX_CONCURRENT_RUNS="40", MAX_RUNS_PER_USER="20") as stack:
        yield stack


def distinct_idempotency_keys(context: Any, case: Any) -> Any:
    """A generated Idempotency-Key, made one per distinct request: schemathesis draws keys
    from a small space ("0", "00", ...), and the same key on another request is a 422
    (IdempotencyKeyReused), which would keep most POSTs from reaching the app's logic.
    Re-sends of the same request keep their key, so replays are exercised too. Keys that
    are invalid on purpose (negative cases) are left as drawn."""
    headers = case.headers or {}
    key = headers.get(http.IDEMPOTENCY_HEADER)
    if isinstance(key, str) and http._KEY.fullmatch(key):
        request = json.dumps(
            [
                case.method,
                case.path,
                case.path_parameters,
                headers.get("X-User"),
                headers.get("X-Run-Id"),
                case.body,
            ],
            sort_keys=True,
            default=repr,
        )
        digest = hashlib.sha256(request.encode()).hexdigest()[:16]
        headers[http.IDEMPOTENCY_HEADER] = f"{key[:100]}-{digest}"
    return case


def test_schemathesis_finds_nothing(fuzz_stack: LocalStack) -> None:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": fuzz_stack.base_url,
            "workers": 1,
            "request-timeout": 30,
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "phases": {"coverage": {"unexpected-methods": UNEXPECTED_METHODS}},
            # Sent where the document asks for it (security), as x-api-key: interrupt-all.
            "auth": {"openapi": {"adminApiKey": {"api_key": fuzz_stack.admin_key}}},
        }
    )
    # The document as the stack serves it. Not `from_url`: schemathesis leaves out the operation
    # that served the schema it loaded, and GET /api/openapi.json is to be tested too.
    with urllib.request.urlopen(f"{fuzz_stack.base_url}/api/openapi.json", timeout=30) as response:
        served = json.load(response)
    schema = schemathesis.openapi.from_dict(served, config=config).exclude(path=ALIASES)
    schema.hook("map_case")(distinct_idempotency_keys)

    tally = Tally()
    finished: events.EngineFinished | None = None
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            tally.add(event.recorder)
        elif isinstance(event, events.NonFatalError):
            tally.errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            finished = event
    print(tally.report())

    assert finished is not None and finished.stop_reason == "completed", finished
    assert not tally.errors, "\n".join(tally.errors)
    assert not tally.failures, (
        "\n\n".join(tally.failures) + f"\n\nlocal stack log:\n{fuzz_stack.log()[-4000:]}"
    )
    paths = {path: item for path, item in openapi.document()["paths"].items() if path not in ALIASES}
    assert set(tally.per_operation) >= {
        f"{method.upper()} {path}" for path, item in paths.items() for method in item
    }
    assert tally.requests >= MIN_REQUESTS, tally.report()
