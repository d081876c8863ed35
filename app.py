"""IoT Playground API: the routes. Each reads its request, calls chalicelib, and answers.

The `http` middleware (chalicelib/http.py) is around every route: log context, refusals,
Idempotency-Key, the error format and CORS. The parts (settings, DynamoDB client, repositories:
chalicelib/parts.py) are built when this module is imported, in Lambda's init phase.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from chalice.app import Chalice, Rate, Request, Response

from chalicelib import http, ingest, schemas
from chalicelib.parts import Parts
from chalicelib.readings import Cursor, ReadingQuery
from chalicelib.runs import RUN_STATUSES, Run
from chalicelib.schemas import FinishRunRequest, ReadingIn, ReadingsBody, StartRunRequest
from chalicelib.settings import load_settings, logger

app = Chalice(app_name="iot-playground", configure_logs=False)  # logs: Powertools' Logger, same name


@functools.cache
def parts() -> Parts:
    return Parts(load_settings())


SETTINGS = parts().settings
# One origin or `*`: Chalice's CORSConfig, and API Gateway answers preflights. Several: each route
# gets an OPTIONS method (at the end), so that preflights reach the app, which answers per Origin.
app.api.cors = http.cors_config(SETTINGS.cors_origins) if len(SETTINGS.cors_origins) == 1 else False
# API Gateway decodes a base64 answer only when the FIRST Accept type is a binary type; Angular
# asks for `application/json, text/plain, */*`, so the deployed API lists `*/*` for the report
# ZIP to reach it as bytes. The app itself keeps Chalice's list: with `*/*` it would encode every
# JSON answer. AWS_CHALICE_CLI_MODE: set by the Chalice CLI (`chalice package`, `deploy`, `local`).
if os.environ.get("AWS_CHALICE_CLI_MODE") and SETTINGS.stage != "local":
    app.api.binary_types = [*app.api.binary_types, "*/*"]


@app.middleware("http")
def api_surface(request: Request, get_response: Any) -> Response:
    return http.handle(request, get_response, SETTINGS.cors_origins, app.routes, lambda: parts())


def request() -> Request:
    return app.current_request  # type: ignore[return-value]


def query() -> Mapping[str, str]:
    return request().query_params or {}


def body() -> bytes:
    raw = request().raw_body
    return raw if isinstance(raw, bytes) else (raw or "").encode()


def attempt_id() -> str | None:
    """The id every attempt of a keyed request shares (Idempotency-Key), else None."""
    attempt = http.attempt(request())
    return attempt.derived_id() if attempt else None


def views(runs: list[Run]) -> list[Any]:
    return [
        parts().runs.view(run, http.public_base_url(request().headers, request().context)) for run in runs
    ]


def page(items: list[Any], last: Any, scope: list[Any]) -> Response:
    token = http.encode_token(last, scope, parts().settings.token_secret)
    return http.json_response({"items": items, "count": len(items), "nextKey": token})


def path_run(run_id: str) -> Run:
    """The run a path names, in any letter case; anything but a run id names none (404)."""
    return parts().runs.get(schemas.path_run_id(run_id))


@app.route("/")
def run_viewer() -> Response:
    from chalicelib import viewer

    return viewer.page(http.stage_prefix(request().context))


@app.route("/viewer/{name}")
def run_viewer_asset(name: str) -> Response:
    from chalicelib import viewer

    return viewer.asset(name)


@app.route("/api/health")
def health() -> dict[str, str]:
    return {"status": "ok", "stage": parts().settings.stage, "version": parts().settings.version}


@app.route("/api/openapi.json")
def openapi_document() -> Response:
    document = (Path(__file__).parent / "chalicelib" / "openapi.json").read_text()  # `make openapi`
    here = http.public_base_url(request().headers, request().context) or "/"
    return Response(body=document.replace('"url": "/"', f'"url": "{here}"', 1), headers={**http.JSON_TYPE})


@app.route("/api/runs/can-start")
def can_start() -> dict[str, Any]:
    return parts().runs.can_start()


@app.route("/api/runs/start", methods=["POST"])
def start_run() -> Response:
    user = schemas.user_header(request().headers)
    params = schemas.decode(body(), StartRunRequest).run_params()
    run = parts().runs.start(user, params, attempt_id())
    return http.json_response(views([run])[0], 201)


@app.route("/api/runs")
def list_runs() -> Response:
    limit = schemas.int_param(query(), "limit", schemas.RUNS_PAGE)
    status = schemas.choice_param(query(), "status", RUN_STATUSES, None)
    user = schemas.user_value(query().get("user"))
    scope, token = ["runs", status, user], schemas.first_param(query(), "nextKey", "lastKey")
    start = http.decode_token(token, scope, parts().settings.token_secret, dict[str, dict[Literal["S"], str]])
    runs, last = parts().runs.repository.page(limit, start, status=status, user=user)
    return page(views(runs), last, scope)


@app.route("/api/runs/all")
def all_runs() -> Response:
    return http.json_response(views(parts().runs.repository.newest()))


@app.route("/api/runs/running")
def running_runs() -> Response:
    return http.json_response(views(parts().runs.sweep()[0]))


@app.route("/api/runs/interrupt-all", methods=["POST"], api_key_required=True)
def interrupt_all() -> dict[str, Any]:
    count, when = parts().runs.interrupt_all(), schemas.format_ms(schemas.now_ms())
    return {"interrupted": count, "message": f"{count} running run(s) interrupted", "timestamp": when}


@app.route("/api/runs/{run_id}")
def get_run(run_id: str) -> Response:
    return http.json_response(views([path_run(run_id)])[0])


@app.route("/api/runs/{run_id}/finish", methods=["POST"])
def finish_run(run_id: str) -> Response:
    finish = schemas.decode(body(), FinishRunRequest) if body().strip() else FinishRunRequest()
    message = finish.errorMessage if finish.errorMessage is not None else finish.message
    run = parts().runs.finish(schemas.path_run_id(run_id), finish.status, message, attempt_id())
    return http.json_response(views([run])[0])


@app.route("/api/runs/{run_id}/stats")
def run_stats(run_id: str) -> Response:
    run = path_run(run_id)
    folded = parts().analytics.stats(run)
    return http.json_response(
        folded.fold.view(run, complete=folded.complete, final=folded.final, note=folded.note(run))
    )


@app.route("/api/sensors/data", methods=["POST"])
@app.route("/sensors/data", methods=["POST"])
def post_readings() -> Response:
    headers, attempt = request().headers, http.attempt(request())
    user = schemas.user_header(headers)
    run_id = schemas.run_id_value(headers.get("x-run-id"), source="X-Run-Id")
    sent: ReadingIn | list[ReadingIn] = schemas.decode(body(), ReadingsBody)
    received_ms = attempt.received_ms if attempt else schemas.now_ms()
    readings = ingest.parse(sent, user=user, run_id=run_id, received_ms=received_ms, nonce=attempt_id())
    stored = ingest.store(readings, parts().runs, parts().readings, stage=parts().settings.stage)
    single = not isinstance(sent, list) and sent.reading is not None
    return http.json_response(readings[0].view() if single else {"ingested": stored}, 201)


@app.route("/api/sensors/data")
@app.route("/sensors/data")
def get_readings() -> Response:
    low, high = schemas.time_range(query(), aliases=("startDate", "endDate"))
    run_id = schemas.run_id_value(query().get("runId"), source="runId")
    sensor_id, kind = (
        schemas.sensor_id_value(query().get("sensorId")),
        schemas.type_value(query().get("type")),
    )
    ascending = schemas.choice_param(query(), "order", ("asc", "desc"), "desc") == "asc"
    if run_id is None and sensor_id is None:
        raise schemas.ValidationFailed("runId or sensorId is required")
    limit = schemas.int_param(query(), "limit", schemas.READINGS_PAGE)
    scope = ["readings", run_id, sensor_id, kind, low, high, ascending]
    token = schemas.first_param(query(), "nextKey", "lastKey")
    cursor = http.decode_token(token, scope, parts().settings.token_secret, Cursor)
    wanted = ReadingQuery(run_id, sensor_id, kind, low, high, ascending)
    found, last = parts().readings.page(wanted, limit, cursor, parts().runs.repository.runs_with_sensor)
    return page([reading.view() for reading in found], last, scope)


@app.route("/api/sensors/series")
def sensor_series() -> Response:
    from chalicelib.analytics import AGGREGATES, read_series

    run_id = schemas.run_id_value(query().get("runId"), source="runId")
    sensor_id = schemas.sensor_id_value(query().get("sensorId"))
    kind = schemas.type_value(query().get("type")) or schemas.DEFAULT_READING_TYPE
    agg = schemas.choice_param(query(), "agg", AGGREGATES, "avg")
    low, high = schemas.time_range(query())
    if run_id is None or sensor_id is None:
        raise schemas.ValidationFailed("runId and sensorId are required")
    run = parts().runs.get(run_id)
    return http.json_response(
        read_series(parts().readings, run, sensor_id, kind, low, high, query().get("interval"), agg)
    )


@app.route("/api/sensors/latest")
def latest_readings() -> Response:
    run_id = schemas.run_id_value(query().get("runId"), source="runId")
    if run_id is None:
        raise schemas.ValidationFailed("runId is required")
    return http.json_response(parts().analytics.latest(parts().runs.get(run_id)))


@app.route("/api/runs/{run_id}/readings.csv")
def run_readings_csv(run_id: str) -> Response:
    from chalicelib import reports

    run = path_run(run_id)
    scope, secret = ["readings.csv", run.id], parts().settings.token_secret
    after = http.decode_token(query().get("nextKey"), scope, secret)
    if after is not None and after.get("pk") != {"S": run.id}:
        raise schemas.BadRequest("nextKey is not a valid pagination token for this query")
    text, complete, next_key = reports.readings_csv(parts().readings, run.id, after)
    headers = {"X-Export-Complete": str(complete).lower()}
    if token := http.encode_token(next_key, scope, secret):
        headers["X-Next-Key"] = token
    return reports.download(text, reports.CSV_TYPE, f"readings-{run.id}.csv", headers, parts().put_in_bucket)


@app.route("/api/reports/download")
def download_report() -> Response:
    from chalicelib import reports

    run_id = schemas.run_id_value(query().get("runId"), source="runId")
    runs = reports.finished_runs(parts().runs.repository, parts().settings.report_runs)
    zipped, complete = reports.build_zip(parts().analytics, parts().readings, runs, run_id)
    headers = {"X-Export-Complete": str(complete).lower()}
    return reports.download(
        zipped, reports.ZIP_TYPE, reports.report_filename(), headers, parts().put_in_bucket
    )


@app.route("/infra/latest-deployment")
def latest_deployment() -> dict[str, Any]:
    # The infrastructure service's: polled every 5 s, read as "none" like a 404, not logged as one.
    return {"success": False, "message": "no deployment information on this API"}


@app.schedule(Rate(1, unit=Rate.MINUTES))
def time_out_orphaned_runs(event: Any) -> dict[str, int]:
    logger.thread_safe_append_keys(stage=parts().settings.stage, requestId=event.context.aws_request_id)
    try:
        return {"timedOut": len(parts().runs.sweep()[1])}
    finally:
        logger.thread_safe_clear_keys()


@app.on_sqs_message(queue=f"iot-playground-{SETTINGS.stage}-device-messages", batch_size=10)
def ingest_device_messages(event: Any) -> dict[str, Any]:
    return ingest.device_messages(
        event.to_dict(), event.context, parts().runs, parts().readings, parts().settings.stage
    )


def preflight(**_: str) -> Response:
    return Response(body="")  # never reached: the middleware answers preflights


if len(SETTINGS.cors_origins) > 1:
    for path in list(app.routes):
        app.route(path, methods=["OPTIONS"])(preflight)
