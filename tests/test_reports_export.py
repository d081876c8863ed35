"""Report downloads read back: `GET /api/runs/{id}/readings.csv` and the ZIP of
`GET /api/reports/download` hold what the JSON API serves, within the request's budget,
and go through the reports bucket (303 to a presigned URL) when too large for Lambda.

The app runs over moto's server (DynamoDB as tests/dynamodb_faults.py makes it answer, and S3),
so the presigned URL is fetched over real HTTP."""

from __future__ import annotations

import csv
import io
import statistics
import urllib.parse
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chalicelib import readings, reports
from tests.helpers import call, finish, post_ok, start_run

CSV_COLUMNS = ["sensorId", "type", "reading", "timestamp", "user"]
RUN_COLUMNS = ["id", "username", "status", "startedAt", "finishedAt", "duration", "interval", "sensors"]
STATS = ["readings", "firstReadingAt", "lastReadingAt", "min", "max", "mean"]


@pytest.fixture(scope="module")
def local_s3(moto_server):
    """An S3 client on moto's server for the module's tests (a new one takes a tenth of a second)."""
    from botocore.config import Config

    from iot_playground.common.endpoints import LOCAL_CREDENTIALS, local_session

    path_style = Config(s3={"addressing_style": "path"})
    return local_session(dict(LOCAL_CREDENTIALS)).client(
        "s3", endpoint_url=moto_server.endpoint, config=path_style
    )


@pytest.fixture
def open_client(dynamodb_faults, moto_server, local_s3, monkeypatch) -> Iterator[Callable[..., Any]]:
    """`open_client(**env)`: the app (with these settings) over moto's DynamoDB and S3, with the
    reports bucket created as `make run` creates it."""
    from chalice.test import Client

    import app
    from iot_playground.deploy.guards import reconcile_bucket
    from tests.conftest import reset_app

    clients = []

    def open_(**env: str) -> Any:
        for name, value in {"S3_ENDPOINT": moto_server.endpoint, **env}.items():
            monkeypatch.setenv(name, value)
        reset_app()  # read now: chalice.test.Client switches to its stage's variables
        dynamodb_faults.install(app.parts().dynamodb)
        reconcile_bucket(local_s3, app.parts().settings)
        assert app.parts().settings.reports_bucket == "iot-playground-reports-test"
        client = Client(app.app)
        clients.append(client)
        return client.__enter__()

    yield open_
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(open_client):
    return open_client()


@pytest.fixture
def queries():
    """DynamoDB calls made through the app's client, by operation."""
    import app

    seen: Counter[str] = Counter()
    app.parts().dynamodb.meta.events.register(
        "before-call.dynamodb", lambda model, **_: seen.update([model.name])
    )
    return seen


def readings_of(run_id: str, count: int, first_ms: int = 1_800_000_000_000) -> list[dict[str, Any]]:
    """`count` readings over three sensors and two types, values not in time order."""
    return [
        {
            "sensorId": f"s{i % 3}",
            "type": "humidity" if i % 2 else "temperature",
            "reading": float((i * 37) % 101) - 20.5,
            "timestamp": first_ms + i * 250,
        }
        for i in range(count)
    ]


def api_readings(client, run_id: str) -> list[dict[str, Any]]:
    """Every reading of the run through `GET /api/sensors/data`, oldest first, page by page."""
    items, token = [], None
    while True:
        path = f"/api/sensors/data?runId={run_id}&order=asc&limit=100" + (
            f"&nextKey={token}" if token else ""
        )
        status, page = call(client, "GET", path)
        assert status == 200, page
        items += page["items"]
        token = page["nextKey"]
        if token is None:
            return items


def as_rows(items: list[dict[str, Any]]) -> list[dict[str, str]]:
    """API readings as the CSV writes them (the reading as Python writes a float)."""
    return [
        {
            "sensorId": i["sensorId"],
            "type": i["type"],
            "reading": repr(float(i["reading"])),
            "timestamp": i["timestamp"],
            "user": i["user"],
        }
        for i in items
    ]


def parse_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def get_csv(client, run_id: str, query: str = "") -> Any:
    return client.http.get(f"/api/runs/{run_id}/readings.csv{query}", headers={"Accept": "text/csv"})


def response_headers(client) -> Any:
    return client.http.get("/api/reports/download", headers={"Accept": "application/zip"}).headers


def download_zip(client) -> zipfile.ZipFile:
    response = client.http.get("/api/reports/download", headers={"Accept": "application/zip"})
    assert response.status_code == 200, response.body[:300]
    assert response.headers["Content-Type"] == "application/zip"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="iot-playground-report-')
    return zipfile.ZipFile(io.BytesIO(response.body))


# ---- readings.csv ----------------------------------------------------------------


def test_readings_csv_holds_every_reading_the_api_serves_in_its_order(client, monkeypatch):
    monkeypatch.setattr(readings, "PAGE_READINGS", 7)  # many pages, so the pages join without loss
    run = start_run(client)
    post_ok(client, run["id"], readings_of(run["id"], 60))
    response = get_csv(client, run["id"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == f'attachment; filename="readings-{run["id"]}.csv"'
    assert response.headers["X-Export-Complete"] == "true" and "X-Next-Key" not in response.headers
    text = response.body.decode()
    assert text.startswith("sensorId,type,reading,timestamp,user\r\n")
    columns, rows = parse_csv(text)
    assert columns == CSV_COLUMNS
    expected = as_rows(api_readings(client, run["id"]))
    assert len(expected) == 60 and rows == expected


def test_readings_csv_of_a_run_without_readings_is_the_header(client):
    run = start_run(client)
    response = get_csv(client, run["id"])
    assert (
        response.status_code == 200 and response.body.decode() == "sensorId,type,reading,timestamp,user\r\n"
    )


@pytest.mark.parametrize(
    ("run_id", "status", "error"),
    [
        ("0b7e2c1e-8d6a-4a51-9f55-4a7c5e3f2a10", 404, "NotFound"),
        ("not-a-run", 404, "NotFound"),  # a path naming no run, as on every route
        ("0b7e2c1e-8d6a-4a51-9f55-4a7c5e3f2a1", 404, "NotFound"),
    ],
)
def test_readings_csv_of_an_unknown_or_malformed_run(client, run_id, status, error):
    code, body = call(client, "GET", f"/api/runs/{run_id}/readings.csv")
    assert (code, body["error"]) == (status, error), body


def test_readings_csv_cells_that_could_start_a_formula_stay_text(client):
    code, run = call(
        client,
        "POST",
        "/api/runs/start",
        {"sensorIds": ["-s1", "-s2"], "duration": 60, "interval": 1},
        **{"X-User": "-eve"},
    )
    assert code == 201, run
    post_ok(
        client,
        run["id"],
        [
            {"sensorId": "-s1", "type": "-cmd", "reading": -3.5},
            {"sensorId": "-s2", "type": "-x", "reading": 1.0},
        ],
        user="-eve",
    )
    _, rows = parse_csv(get_csv(client, run["id"]).body.decode())
    assert sorted((r["sensorId"], r["type"], r["reading"], r["user"]) for r in rows) == [
        ("'-s1", "'-cmd", "-3.5", "'-eve"),  # numbers the API writes itself are left alone
        ("'-s2", "'-x", "1.0", "'-eve"),
    ]


def test_readings_csv_reads_a_bounded_number_of_pages_and_says_where_to_go_on(client, queries, monkeypatch):
    monkeypatch.setattr(readings, "PAGE_READINGS", 5)
    monkeypatch.setattr(reports, "MAX_EXPORT_PAGES", 2)
    run = start_run(client)
    post_ok(client, run["id"], readings_of(run["id"], 23))
    expected = as_rows(api_readings(client, run["id"]))
    got: list[dict[str, str]] = []
    query, requests = "", 0
    while True:
        queries.clear()
        response = get_csv(client, run["id"], query)
        requests += 1
        assert response.status_code == 200
        # One GetItem for the run, then at most 2 Query calls of 5 readings.
        assert queries["GetItem"] == 1 and queries["Query"] <= 2, queries
        _, rows = parse_csv(response.body.decode())
        assert len(rows) <= 10
        got += rows
        if response.headers["X-Export-Complete"] == "true":
            assert "X-Next-Key" not in response.headers
            break
        query = "?nextKey=" + urllib.parse.quote(response.headers["X-Next-Key"])
    assert got == expected and requests == 3  # 10 + 10 + 3 (and the empty page after a full one)


def test_readings_csv_refuses_a_next_key_of_another_query(client):
    run, other = start_run(client), start_run(client, user="bob")
    post_ok(client, run["id"], readings_of(run["id"], 3))
    _, page = call(client, "GET", f"/api/sensors/data?runId={run['id']}&order=asc&limit=1")
    for token in (page["nextKey"], "garbage"):
        code, body = call(
            client, "GET", f"/api/runs/{run['id']}/readings.csv?nextKey={urllib.parse.quote(token)}"
        )
        assert code == 400 and "nextKey" in body["message"], body
    assert get_csv(client, other["id"]).status_code == 200


# ---- the report ZIP ------------------------------------------------------------


def test_an_empty_history_gives_a_zip_of_the_summary_header(client):
    with download_zip(client) as archive:
        assert archive.namelist() == ["summary.csv"]
        columns, rows = parse_csv(archive.read("summary.csv").decode())
    assert rows == [] and columns[: len(RUN_COLUMNS)] == RUN_COLUMNS and set(STATS) <= set(columns)


def test_the_zip_holds_the_newest_finished_runs_as_the_api_serves_them(open_client):
    client = open_client(REPORT_RUNS="3")
    runs = []
    for i, user in enumerate(["u0", "u1", "u2", "u3"]):
        run = start_run(client, user=user)
        post_ok(
            client,
            run["id"],
            readings_of(run["id"], 5 + 4 * i, first_ms=1_800_000_000_000 + i * 10**6),
            user=user,
        )
        finish(client, run["id"], "FAILED" if i == 2 else "SUCCESS", "probe fell off" if i == 2 else None)
        runs.append(run["id"])
    running = start_run(client, user="u4")  # newest, but not finished: not in the report
    post_ok(client, running["id"], readings_of(running["id"], 3), user="u4")

    with download_zip(client) as archive:
        _, summary = parse_csv(archive.read("summary.csv").decode())
        files = {row["id"]: parse_csv(archive.read(row["file"]).decode()) for row in summary}
        assert sorted(archive.namelist()) == sorted(["summary.csv", *(row["file"] for row in summary)])

    _, listed = call(client, "GET", "/api/runs?limit=100")
    by_id = {run["id"]: run for run in listed["items"]}
    assert [row["id"] for row in summary] == runs[:0:-1]  # the 3 newest finished, newest first
    for row in summary:
        run = by_id[row["id"]]
        assert (
            row["file"] == f"runs/{run['startedAt'][:19].replace('-', '').replace(':', '')}Z-{run['id']}.csv"
        )
        assert {k: row[k] for k in RUN_COLUMNS} == {
            "id": run["id"],
            "username": run["username"],
            "status": run["status"],
            "startedAt": run["startedAt"],
            "finishedAt": run["finishedAt"],
            "duration": str(run["duration"]),
            "interval": str(run["interval"]),
            "sensors": " ".join(run["params"]["sensorIds"]),
        }
        assert row["errorMessage"] == (run["errorMessage"] or "")
        items = api_readings(client, run["id"])
        columns, rows = files[run["id"]]
        assert columns == CSV_COLUMNS and rows == as_rows(items)
        values = [float(i["reading"]) for i in items]
        assert {k: row[k] for k in STATS} == {
            "readings": str(len(items)),
            "firstReadingAt": items[0]["timestamp"],
            "lastReadingAt": items[-1]["timestamp"],
            "min": repr(min(values)),
            "max": repr(max(values)),
            "mean": repr(statistics.fmean(values)),
        }
        assert row["complete"] == "true"
    assert by_id[runs[2]]["errorMessage"] == "probe fell off"


def test_a_finished_run_without_readings_has_empty_stats(client):
    run = start_run(client)
    finish(client, run["id"])
    with download_zip(client) as archive:
        _, (row,) = parse_csv(archive.read("summary.csv").decode())
        assert archive.read(row["file"]).decode() == "sensorId,type,reading,timestamp,user\r\n"
    assert {k: row[k] for k in STATS} == {k: "0" if k == "readings" else "" for k in STATS}


def test_the_zip_shares_one_page_budget_and_says_which_runs_it_cut(open_client, queries, monkeypatch):
    monkeypatch.setattr(readings, "PAGE_READINGS", 4)
    monkeypatch.setattr(reports, "MAX_EXPORT_PAGES", 3)
    client = open_client()
    older, newer = start_run(client), start_run(client, user="bob")
    post_ok(client, older["id"], readings_of(older["id"], 6))
    post_ok(client, newer["id"], readings_of(newer["id"], 6), user="bob")
    for run in (older, newer):
        finish(client, run["id"])
    queries.clear()
    with download_zip(client) as archive:
        _, summary = parse_csv(archive.read("summary.csv").decode())
        rows = {row["id"]: (row, parse_csv(archive.read(row["file"]).decode())[1]) for row in summary}
        assert response_headers(client)["X-Export-Complete"] == "false"
    # 3 pages of readings: the newer run whole (2 pages), the older cut after 1. Each row's figures
    # are the run's statistics, which count every reading, whatever the file holds.
    newer_row, newer_rows = rows[newer["id"]]
    older_row, older_rows = rows[older["id"]]
    assert (newer_row["complete"], newer_row["readings"], len(newer_rows)) == ("true", "6", 6)
    assert (older_row["complete"], older_row["readings"], len(older_rows)) == ("false", "6", 4)
    assert older_rows == as_rows(api_readings(client, older["id"]))[:4]


def test_zip_cells_that_could_start_a_formula_stay_text(client):
    code, run = call(
        client,
        "POST",
        "/api/runs/start",
        {"sensorIds": ["-s1"], "duration": 60, "interval": 1},
        **{"X-User": "@eve"},
    )
    assert code == 201
    post_ok(client, run["id"], [{"sensorId": "-s1", "type": "-t", "reading": 2.0}], user="@eve")
    finish(client, run["id"], "FAILED", "=1+2")
    with download_zip(client) as archive:
        _, (row,) = parse_csv(archive.read("summary.csv").decode())
        _, (reading,) = parse_csv(archive.read(row["file"]).decode())
    assert (row["username"], row["sensors"], row["errorMessage"]) == ("'@eve", "'-s1", "'=1+2")
    assert (reading["sensorId"], reading["type"], reading["user"]) == ("'-s1", "'-t", "'@eve")


# ---- over Lambda's response limit: the reports bucket -------------------------------


def fetch(url: str) -> tuple[bytes, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), response.headers


def assert_redirect(response: Any) -> str:
    assert response.status_code == 303, response.body[:300]
    location: str = response.headers["Location"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    assert query["X-Amz-Expires"] == ["300"] and "X-Amz-Signature" in query
    assert urllib.parse.urlsplit(location).path.startswith("/iot-playground-reports-test/downloads/")
    return location


def test_a_zip_over_the_limit_is_handed_out_through_the_bucket(client, monkeypatch):
    run = start_run(client)
    post_ok(client, run["id"], readings_of(run["id"], 40))
    finish(client, run["id"])
    with download_zip(client) as archive:  # under the limit: the same content inline
        inline = {name: archive.read(name) for name in archive.namelist()}

    monkeypatch.setattr(reports, "RESPONSE_LIMIT_BYTES", 100)
    response = client.http.get("/api/reports/download", headers={"Accept": "application/zip"})
    location = assert_redirect(response)
    assert response.headers["Content-Type"] == "application/json"
    assert response.json_body == {"location": location, "expiresIn": 300}
    body, headers = fetch(location)
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"].startswith('attachment; filename="iot-playground-report-')
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == inline


def test_a_readings_csv_over_the_limit_is_handed_out_through_the_bucket(client, monkeypatch):
    run = start_run(client)
    post_ok(client, run["id"], readings_of(run["id"], 40))
    inline = get_csv(client, run["id"]).body
    monkeypatch.setattr(reports, "RESPONSE_LIMIT_BYTES", len(inline) - 1)
    response = get_csv(client, run["id"])
    location = assert_redirect(response)
    assert response.headers["X-Export-Complete"] == "true"
    body, headers = fetch(location)
    assert body == inline
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    assert headers["Content-Disposition"] == f'attachment; filename="readings-{run["id"]}.csv"'


def test_the_limit_counts_the_body_as_lambda_carries_it():
    # base64 for bytes; a JSON string, CRLF escaped, for text.
    assert reports.response_bytes(b"x" * 3_000_000) == 4_000_000
    assert reports.response_bytes("a,b\r\n") == len('"a,b\\r\\n"')
    assert reports.RESPONSE_LIMIT_BYTES < 6 * 1024 * 1024 - 256 * 1024


def test_the_s3_client_is_made_only_for_a_download_over_the_limit(client):
    import app

    app.parts().__dict__.pop("s3", None)
    run = start_run(client)
    finish(client, run["id"])
    download_zip(client)
    assert get_csv(client, run["id"]).status_code == 200
    assert "s3" not in vars(app.parts())
