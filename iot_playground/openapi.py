"""`iot-playground openapi` (`make openapi`): the API's OpenAPI 3.1 document, `docs/openapi.json`,
built from what the app defines: the msgspec structs it decodes and answers with, and the patterns,
bounds and error table of `chalicelib/schemas.py`. The app serves the committed file (linked as
`chalicelib/openapi.json`); tests/test_openapi.py holds it to app.routes and to this module.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import msgspec

from chalicelib import analytics, http, schemas, viewer
from chalicelib import schemas as errors
from chalicelib.runs import RUN_STATUSES, RunView

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
JSON = "application/json"
REF = "#/components/schemas/{name}"


def shape(name: str, **fields: Any) -> Any:
    """A struct of these fields, for the schema of an answer app.py builds as a dict."""
    return msgspec.defstruct(name, list(fields.items()))


Health = shape("Health", status=Literal["ok"], stage=str, version=str)
CanStart = shape("CanStart", canStart=bool, currentRunning=int, maxAllowed=int, available=int)
RunPage = shape("RunPage", items=list[RunView], count=int, nextKey=str | None)
ReadingPage = shape("ReadingPage", items=list[schemas.ReadingView], count=int, nextKey=str | None)
Ingested = shape("Ingested", ingested=int)  # distinct readings stored
Interrupted = shape("Interrupted", interrupted=int, message=str, timestamp=str)
NoDeployment = shape("NoDeployment", success=Literal[False], message=str)


class Error(msgspec.Struct):
    """`error` is a code of the table below; some add fields (`currentRunning`, `maxAllowed`,
    `maxPerUser`, `status`) and a batch refused halfway says in `details` what was stored."""

    error: str
    message: str
    details: Any | msgspec.UnsetType = msgspec.UNSET


STRUCTS: tuple[Any, ...] = (schemas.RunParams, schemas.FinishRunRequest, schemas.ReadingsBody)
STRUCTS += (schemas.ReadingView, RunView, Health, CanStart, RunPage, ReadingPage, Ingested, Interrupted)
STRUCTS += (NoDeployment, Error, analytics.RunStatsView, analytics.LatestView, analytics.SeriesAnswer)


def ecma_pattern(python_pattern: str) -> str:
    """The ECMAScript regex (JSON Schema's) matching what the Python one matches: Python's
    `(?!\\n)$` is ECMAScript's `$`; a bare Python `$` also matches before a final newline."""
    pattern = python_pattern
    for end, ecma in ((r"(?!\n)$", "$"), ("$", r"\n?$")):
        if python_pattern.endswith(end) and not python_pattern.endswith("\\" + end):
            pattern = python_pattern[: -len(end)] + ecma
            break
    if not pattern.startswith("^") or re.search(r"\(\?P|\(\?[aiLmsux]|\\[AZ]|\(\?>", pattern):
        raise ValueError(f"pattern {python_pattern!r} is not anchored or has Python-only syntax")
    return pattern


def _portable(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            k: ecma_pattern(v) if k == "pattern" and isinstance(v, str) else _portable(v)
            for k, v in schema.items()
        }
    return [_portable(item) for item in schema] if isinstance(schema, list) else schema


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


def string(pattern: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "pattern": ecma_pattern(pattern), **extra}


def param(name: str, schema: dict[str, Any], description: str, where: str = "query") -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


TEXT: dict[str, Any] = {"type": "string"}
RUN_ID = string(schemas.RUN_ID_PATTERN, description="a run id (UUID, any letter case)")
SENSOR, TYPE, USER = (
    string(p) for p in (schemas.SENSOR_ID_PATTERN, schemas.TYPE_PATTERN, schemas.USER_PATTERN)
)
TIMESTAMP = {
    "anyOf": [{"type": "string", "maxLength": 40}, {"type": "integer", "minimum": schemas.EARLIEST_MS}]
}
RUN_PATH = param("run_id", RUN_ID, "the run; anything that is not a run id names none: 404", "path")
X_USER = param("X-User", USER, "the user; `anonymous` when absent", "header")
KEY = param(
    http.IDEMPOTENCY_HEADER,
    {"type": "string", "pattern": "^[!-~]{1,128}$"},
    "sent again with the same key, the request is answered, not run again",
    "header",
)

# What a client does next with the run it started (and how schemathesis chains its requests).
RUN_OUT, FIRST_SENSOR = "$response.body#/id", "$response.body#/params/sensorIds/0"
LINKS = {
    "GetRun": {"operationId": "getApiRunsRunId", "parameters": {"path.run_id": RUN_OUT}},
    "FinishRun": {"operationId": "postApiRunsRunIdFinish", "parameters": {"path.run_id": RUN_OUT}},
    "PostReading": {
        "operationId": "postApiSensorsData",
        "parameters": {"header.X-Run-Id": RUN_OUT},
        "requestBody": {"sensorId": FIRST_SENSOR, "reading": 21.5},
    },
    "GetReadings": {"operationId": "getApiSensorsData", "parameters": {"query.runId": RUN_OUT}},
    "GetStats": {"operationId": "getApiRunsRunIdStats", "parameters": {"path.run_id": RUN_OUT}},
    "GetLatest": {"operationId": "getApiSensorsLatest", "parameters": {"query.runId": RUN_OUT}},
    "GetSeries": {
        "operationId": "getApiSensorsSeries",
        "parameters": {"query.runId": RUN_OUT, "query.sensorId": FIRST_SENSOR},
    },
    "GetCsv": {"operationId": "getApiRunsRunIdReadingsCsv", "parameters": {"path.run_id": RUN_OUT}},
}


def page(name: str, bounds: tuple[int, int, int]) -> list[dict[str, Any]]:
    limit = dict(zip(("minimum", "maximum", "default"), bounds, strict=True))
    return [
        param("limit", {"type": "integer", **limit}, f"page size of {name}"),
        param("nextKey", TEXT, "the previous page's `nextKey` (signed: another query's is a 400)"),
        param("lastKey", TEXT, "alias of `nextKey`"),
    ]


def answer(
    status: str, schema: dict[str, Any] | str | None, description: str, content: str = JSON, **extra: Any
) -> Any:
    """`schema`: a component's name, or the schema itself; None for no body."""
    schema = ref(schema) if isinstance(schema, str) else schema
    body = {"content": {content: {"schema": schema}}} if schema is not None else {}
    return {status: {"description": description, **body, **extra}}


def op(
    summary: str,
    ok: dict[str, Any],
    raises: tuple[type[errors.ApiError], ...] = (),
    params: tuple[dict[str, Any], ...] = (),
    body: str | None = None,
    db: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """An operation: its answers are `ok`, the errors it raises, and those every route may answer."""
    every = (errors.PayloadTooLarge, errors.UnsupportedMediaType, *((errors.Unavailable,) if db else ()))
    responses = dict(ok)
    for error in (*raises, *every):
        codes = " or ".join(f"`{e.code}`" for e in errors.ANSWERS if e.status == error.status)
        responses[str(error.status)] = {"description": codes, "content": {JSON: {"schema": ref("Error")}}}
    operation = {"summary": summary, "parameters": list(params), "responses": responses, **extra}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(body)}}}
    return operation


def operations() -> dict[str, dict[str, Any]]:
    """Each route of app.py, as "method path", and its operation (a test holds them equal)."""
    bad, missing, conflict = errors.BadRequest, errors.NotFound, errors.RunNotRunning
    posted = (bad, errors.IdempotencyKeyReused, errors.RequestInProgress)
    sensor = "the sensor; alone, each run that declared it, newest first, then its readings without a run"
    bounds = zip(("from", "to", "startDate", "endDate"), ("earliest", "latest") * 2, strict=True)
    order = {"type": "string", "enum": ["asc", "desc"], "default": "desc"}
    get_readings = op(
        "Readings of a run or a sensor, in time order",
        answer("200", "ReadingPage", "A page"),
        raises=(bad,),
        params=(
            param("runId", RUN_ID, "the run"),
            param("sensorId", SENSOR, sensor),
            param("type", TYPE, "the type, e.g. `temperature`"),
            *(param(name, TIMESTAMP, f"{what} timestamp, ISO-8601 or epoch ms") for name, what in bounds),
            param("order", order, "time order"),
            *page("readings", schemas.READINGS_PAGE),
        ),
    )
    post_readings = op(
        f"Store one reading, a measurement object, or up to {schemas.MAX_BATCH_READINGS} of either",
        answer(
            "201", {"anyOf": [ref("ReadingView"), ref("Ingested")]}, "The reading, or how many were stored"
        ),
        raises=(*posted, missing, conflict),
        params=(X_USER, param("X-Run-Id", RUN_ID, "the run of readings that name none", "header"), KEY),
        body="ReadingsBody",
    )
    elsewhere = answer("303", None, "Too large for Lambda: `Location` is a presigned URL of it")
    csv = answer("200", TEXT, "The CSV (`X-Export-Complete`, `X-Next-Key`)", "text/csv") | elsewhere
    zip_file = answer("200", {"type": "string", "format": "binary"}, "The ZIP", "application/zip") | elsewhere
    series = (
        param("runId", RUN_ID, "the run (required)"),
        param("sensorId", SENSOR, "the sensor (required)"),
        param("type", TYPE, "the type (default temperature)"),
        param("interval", string(analytics.INTERVAL_PATTERN), "bucket size, e.g. 10s"),
        param("agg", {"type": "string", "enum": list(analytics.AGGREGATES)}, "aggregate per bucket"),
        param("from", TIMESTAMP, "start (default: the run's start)"),
        param("to", TIMESTAMP, "end, excluded (default: the run's end, or now)"),
    )
    runs = {"type": "array", "items": ref("RunView")}
    runs_query = (
        param("status", {"type": "string", "enum": list(RUN_STATUSES)}, "only runs of this status"),
        param("user", USER, "only this user's runs"),
        *page("runs", schemas.RUNS_PAGE),
    )
    assets = viewer.CONTENT_TYPES.values()
    return {
        "get /": op("The run viewer page", answer("200", TEXT, "HTML", "text/html"), db=False),
        "get /viewer/{name}": op(
            "A file of the run viewer",
            {
                "200": {
                    "description": "The file",
                    "content": {t.split(";")[0]: {"schema": TEXT} for t in assets},
                }
            },
            raises=(missing,),
            params=(
                param("name", {"type": "string", "enum": sorted(viewer.CONTENT_TYPES)}, "a file", "path"),
            ),
            db=False,
        ),
        "get /api/health": op("Liveness, stage and version", answer("200", "Health", "Up"), db=False),
        "get /api/openapi.json": op(
            "This document", answer("200", {"type": "object"}, "OpenAPI 3.1"), db=False
        ),
        "get /api/runs/can-start": op(
            "Whether a run can start now", answer("200", "CanStart", "The run limit and how full it is")
        ),
        "post /api/runs/start": op(
            "Start a run",
            answer("201", "RunView", "The run", links=LINKS),
            raises=(*posted, errors.RunLimitReached),
            params=(X_USER, KEY),
            body="RunParams",
        ),
        "get /api/runs": op(
            "Runs, newest first", answer("200", "RunPage", "A page"), raises=(bad,), params=runs_query
        ),
        "get /api/runs/all": op("The newest runs (at most 1000)", answer("200", runs, "Runs")),
        "get /api/runs/running": op(
            "The RUNNING runs (overdue ones are timed out first)", answer("200", runs, "Runs")
        ),
        "post /api/runs/interrupt-all": op(
            "Interrupt every RUNNING run (operators)",
            answer("200", "Interrupted", "How many"),
            raises=(errors.Forbidden, *posted),
            params=(param("x-api-key", TEXT, "the stage's admin API key", "header"), KEY),
            security=[{"adminApiKey": []}],
        ),
        "get /api/runs/{run_id}": op(
            "One run", answer("200", "RunView", "The run"), raises=(missing,), params=(RUN_PATH,)
        ),
        "post /api/runs/{run_id}/finish": op(
            "Finish a run: SUCCESS (or COMPLETED) or FAILED",
            answer("200", "RunView", "The ended run"),
            raises=(*posted, missing, conflict),
            params=(RUN_PATH, KEY),
            body="FinishRunRequest",
        ),
        "get /api/runs/{run_id}/stats": op(
            "Statistics of a run's readings per sensor and type",
            answer("200", "RunStatsView", "The figures; `complete` and `note` say how far they go"),
            raises=(missing,),
            params=(RUN_PATH,),
        ),
        "get /api/runs/{run_id}/readings.csv": op(
            "A run's readings as CSV, oldest first",
            csv,
            raises=(bad, missing),
            params=(RUN_PATH, param("nextKey", TEXT, "where the previous part stopped")),
        ),
        "get /api/sensors/data": get_readings,
        "post /api/sensors/data": post_readings,
        "get /sensors/data": get_readings,  # the older frontend's path
        "post /sensors/data": post_readings,
        "get /api/sensors/series": op(
            "One series aggregated per time bucket",
            answer("200", "SeriesAnswer", "The buckets"),
            raises=(bad, missing),
            params=series,
        ),
        "get /api/sensors/latest": op(
            "The last reading of each sensor and type of a run",
            answer("200", "LatestView", "The readings"),
            raises=(bad, missing),
            params=(param("runId", RUN_ID, "the run (required)"),),
        ),
        "get /api/reports/download": op(
            "A ZIP of the newest finished runs",
            zip_file,
            raises=(bad,),
            params=(param("runId", RUN_ID, "also this run's readings"),),
        ),
        "get /infra/latest-deployment": op(
            "Never a deployment (another service's route)", answer("200", "NoDeployment", "None"), db=False
        ),
    }


def document() -> dict[str, Any]:
    schemas_of, components = msgspec.json.schema_components(STRUCTS, ref_template=REF)
    # A union: no name of its own.
    components["ReadingsBody"] = schemas_of[STRUCTS.index(schemas.ReadingsBody)]
    paths: dict[str, dict[str, Any]] = {}
    for route, operation in operations().items():
        method, path = route.split(" ")
        words = "".join(word.title() for word in re.findall("[A-Za-z0-9]+", path)) or "Root"
        paths.setdefault(path, {})[method] = {"operationId": method + words, **operation}
    return {
        "openapi": "3.1.0",
        "info": {"title": "IoT Playground API", "version": version("iot-playground")},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": _portable(components),
            "securitySchemes": {"adminApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
    }


def write(path: Path = DOCUMENT) -> bool:
    """Write the document; whether the file changed."""
    text = json.dumps(document(), indent=2) + "\n"
    changed = not path.exists() or path.read_text() != text
    path.write_text(text)
    return changed
