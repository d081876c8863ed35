"""What one caller may do to the others: at most MAX_RUNS_PER_USER runs of one user
(held under concurrency by the same transaction as the global limit), readings only
from a run's declared sensors, report cells that stay data, a secret that signs page
tokens, and page tokens that are keys of their query."""

from __future__ import annotations

import csv
import io
import threading
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import call, start_run

RUN_LIMIT, PER_USER = 5, 2


def slot_counts():
    """(global counter, RUNNING runs, {user: (user counter, user's RUNNING runs)})."""
    import app

    runs = app.parts().runs.repository
    running = runs.newest(status="RUNNING")
    per_user = {}
    for user in {run.username for run in running}:
        per_user[user] = (runs.count_running(user), sum(run.username == user for run in running))
    return runs.count_running(), len(running), per_user


def test_a_user_may_hold_at_most_max_runs_per_user_and_others_still_start(client):
    first, _ = start_run(client, user="alice"), start_run(client, user="alice")
    status, refused = call(
        client,
        "POST",
        "/api/runs/start",
        {"sensorIds": ["s"], "duration": 9, "interval": 1},
        **{"X-User": "alice"},
    )
    assert (status, refused["error"]) == (409, "UserRunLimitReached")
    assert "alice already has 2 runs running" in refused["message"]
    assert start_run(client, user="bob")["status"] == "RUNNING"
    call(client, "POST", f"/api/runs/{first['id']}/finish")
    assert start_run(client, user="alice")["status"] == "RUNNING"  # the slot came back
    assert slot_counts() == (3, 3, {"alice": (2, 2), "bob": (1, 1)})


@pytest.mark.slow
@pytest.mark.parametrize("users", [2, 4])
def test_fifty_simultaneous_starts_from_a_few_users_keep_both_limits(dynamodb_faults, users):
    """2 users can hold 4 runs, under the run limit: only the per-user limit stops them;
    4 users could hold 8: the run limit stops them at 5."""
    import app
    from chalicelib.schemas import ApiError, RunParams

    service = app.parts().runs
    runs = service.repository
    barrier = threading.Barrier(50)

    def start(i):
        barrier.wait()
        try:
            return service.start(
                f"user-{i % users}", RunParams(sensorIds=["s"], duration=60, interval=1)
            ).username
        except ApiError as error:
            return error.code

    with ThreadPoolExecutor(50) as pool:
        answers = Counter(pool.map(start, range(50)))
    started = {user: n for user, n in answers.items() if user.startswith("user-")}
    # Invariants: no user above PER_USER, nobody above RUN_LIMIT, every counter equals its runs.
    expected = min(RUN_LIMIT, users * PER_USER)
    assert sum(started.values()) == expected and max(started.values()) == PER_USER
    assert answers["RunLimitReached"] + answers["UserRunLimitReached"] == 50 - expected
    total, running, per_user = slot_counts()
    assert (total, running) == (expected, expected)
    assert all(counter == held for counter, held in per_user.values())
    for run in runs.newest(status="RUNNING"):
        runs.end(run.id, "SUCCESS", None, "test")
    assert slot_counts() == (0, 0, {})


def test_a_reading_must_come_from_a_declared_sensor(client):
    status, run = call(
        client, "POST", "/api/runs/start", {"sensorIds": ["t-1", "t-2"], "duration": 60, "interval": 1}
    )
    assert status == 201
    headers = {"X-Run-Id": run["id"]}
    assert call(client, "POST", "/api/sensors/data", {"sensorId": "t-1", "reading": 1}, **headers)[0] == 201
    batch = [{"sensorId": "t-2", "reading": 2}, {"sensorId": "intruder", "reading": 3}]
    status, error = call(client, "POST", "/api/sensors/data", batch, **headers)
    assert (
        status == 400
        and "intruder" in error["message"]
        and error["details"]["unknownSensorIds"] == ["intruder"]
    )
    # Nothing of the refused batch was stored.
    assert call(client, "GET", f"/api/sensors/data?runId={run['id']}")[1]["count"] == 1


def test_report_cells_that_could_start_a_formula_stay_text(client):
    run = start_run(client, user="-alice")
    message = '=HYPERLINK("http://example.invalid","click")'
    call(client, "POST", f"/api/runs/{run['id']}/finish", {"status": "FAILED", "errorMessage": message})
    response = client.http.get("/api/reports/download", headers={"Accept": "application/zip"})
    with zipfile.ZipFile(io.BytesIO(response.body)) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("summary.csv").decode())))
    assert rows[0]["errorMessage"] == "'" + message
    assert rows[0]["username"] == "'-alice"
    assert rows[0]["duration"] == "60"  # numbers the API writes itself are left alone


def test_a_deployed_stage_refuses_to_start_with_the_built_in_secret(monkeypatch):
    from chalicelib.settings import ConfigurationError, load_settings

    monkeypatch.delenv("PAGINATION_TOKEN_SECRET", raising=False)
    monkeypatch.setenv("STAGE", "local")
    assert load_settings().token_secret  # `make run` needs nothing
    monkeypatch.setenv("STAGE", "prod")
    with pytest.raises(ConfigurationError, match="PAGINATION_TOKEN_SECRET"):
        load_settings()
    monkeypatch.setenv("PAGINATION_TOKEN_SECRET", "x" * 32)
    assert load_settings().token_secret == "x" * 32


@pytest.mark.parametrize(
    "key",
    [
        {"bogus": {"S": "x"}},
        {"kind": {"S": "run"}},
        {"kind": {"S": "run"}, "startedAt": {"X": "1"}, "id": {"S": "a"}},
        {"kind": {"S": "run"}, "startedAt": {"S": "1", "N": "1"}, "id": {"S": "a"}},
    ],
)
def test_a_signed_token_whose_key_is_not_a_key_of_the_query_is_400(client, key):
    import app
    from chalicelib.http import encode_token

    token = encode_token(key, ["runs", None, None], app.parts().settings.token_secret)
    status, error = call(client, "GET", f"/api/runs?nextKey={token}")
    assert status == 400 and "nextKey" in error["message"]
