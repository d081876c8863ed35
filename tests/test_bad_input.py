"""Bad input of any kind gets a 4xx JSON error naming the problem: never a 5xx, never a trace."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.bad_inputs import BAD_QUERIES, Rule, rule_cases, write_cases
from tests.helpers import JSON, http, start_run


def assert_client_error_or_success(status: int, body: bytes, what: str) -> None:
    assert status < 500, f"{what} -> {status} {body[:300]!r}"
    if status >= 400:
        payload = json.loads(body)
        assert isinstance(payload.get("error"), str) and payload["error"], what
        assert isinstance(payload.get("message"), str) and payload["message"], what
        assert "Traceback" not in body.decode(errors="replace"), what


def test_write_routes_sweep(client):
    start_run(client)  # a RUNNING run exists while the sweep runs
    count = 0
    for method, path, body, headers in write_cases():
        response = client.http.request(method, path, headers=headers, body=body)
        assert_client_error_or_success(response.status_code, response.body, f"{method} {path} {body[:60]!r}")
        count += 1
    assert count > 1000


def test_read_routes_sweep(client):
    for path in BAD_QUERIES:
        response = client.http.get(path)
        assert 400 <= response.status_code < 500, f"{path} -> {response.status_code}"
        assert_client_error_or_success(response.status_code, response.body, path)


def test_messages_say_what_is_wrong(client):
    response = client.http.post(
        "/api/sensors/data",
        headers={"Content-Type": "application/json"},
        body='{"sensorId": "s", "reading": "27.4"}',
    )
    assert response.status_code == 400
    assert json.loads(response.body) == {
        "error": "ValidationError",
        "message": "invalid body: Expected `float | null`, got `str` - at `$.reading`",
    }
    response = client.http.post("/api/runs/start", headers={"X-User": "a b", **JSON}, body="{}")
    assert json.loads(response.body)["message"].startswith("X-User")


def rule_failure(rule: Rule, status: int, payload: Any) -> str | None:
    """Why the answer (status, decoded JSON body) breaks the rule, or None if it keeps it."""
    what = f"{rule.method} {rule.path[:90]} {rule.body[:60]!r} {rule.headers} -> {status} {payload!r:.200}"
    if status != rule.status or not isinstance(payload, dict):
        return f"expected {rule.status} with a JSON object: {what}"
    if not (isinstance(payload.get("error"), str) and payload["error"]):
        return f"no error code: {what}"
    message = payload.get("message")
    if not (isinstance(message, str) and rule.says in message):
        return f"message does not say {rule.says!r}: {what}"
    return None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def test_each_refusal_names_its_problem(client):
    start_run(client)  # a RUNNING run exists meanwhile
    failures: list[str] = []
    for rule in rule_cases():
        response = client.http.request(rule.method, rule.path, headers=rule.headers, body=rule.body)
        failure = rule_failure(rule, response.status_code, _json(response.body))
        if failure:
            failures.append(failure)
    assert not failures, f"{len(failures)} broken:\n" + "\n".join(failures[:20])


@pytest.mark.e2e
def test_each_refusal_names_its_problem_over_http(local_stack):
    cases = [rule for rule in rule_cases() if rule.over_http]
    failures: list[str] = []
    for rule in cases:
        status, payload, _ = http(
            rule.method, f"{local_stack.base_url}{rule.path}", rule.body or None, **rule.headers
        )
        failure = rule_failure(rule, status, payload)
        if failure:
            failures.append(failure)
    assert not failures, f"{len(failures)} broken:\n" + "\n".join(failures[:20])
    assert len(cases) > 200
