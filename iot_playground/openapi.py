"""`iot-playground openapi` (`make openapi`): the API's OpenAPI 3.1 document, `docs/openapi.json`.

Built from what the app defines: the msgspec structs it decodes and answers with (their JSON
Schema by `msgspec.json.schema_components`), the patterns and bounds in `chalicelib/schemas.py`,
and the error table in `chalicelib/schemas.py`. The app serves the committed file at
`GET /api/openapi.json` (`chalicelib/openapi.json` is a link to it); nothing of this module
ships in the Lambda package. tests/test_openapi.py holds the document to app.routes and to
the committed file; tests/test_openapi_fuzz.py fuzzes the local stack with schemathesis.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import msgspec

from chalicelib import analytics, http, schemas
from chalicelib import schemas as errors
from chalicelib.runs import RUN_STATUSES, RunView

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
JSON = "application/json"


class Health(msgspec.Struct):
    status: Literal["ok"]
    stage: str
    version: str


class CanStart(msgspec.Struct):
    canStart: bool
    currentRunning: int
    maxAllowed: int
    available: int


class RunPage(msgspec.Struct):
    items: list[RunView]
    count: int
    nextKey: str | None


class ReadingPage(msgspec.Struct):
    items: list[schemas.ReadingView]
    count: int
    nextKey: str | None


class Ingested(msgspec.Struct):
    ingested: int  # distinct readings stored


class Interrupted(msgspec.Struct):
    interrupted: int
    message: str
    timestamp: str


class NoDeployment(msgspec.Struct):
    success: Literal[False]
    message: str


class Error(msgspec.Struct):
    """`error` is a code of the table below; some add fields (`currentRunning`, `maxAllowed`,
    `maxPerUser`, `status`) and a batch refused halfway says in `details` what was stored."""

    error: str
    message: str
    details: Any | msgspec.UnsetType = msgspec.UNSET


STRUCTS: tuple[Any, ...] = (
    schemas.RunParams,
    schemas.FinishRunRequest,
    schemas.ReadingsBody,
    schemas.ReadingView,
)
STRUCTS += (RunView, Health, CanStart, RunPage, ReadingPage, Ingested, Interrupted, NoDeployment, Error)
STRUCTS += (analytics.RunStatsView, analytics.LatestView, analytics.SeriesAnswer)


def ecma_pattern(python_pattern: str) -> str:
    """The ECMAScript regex (JSON Schema's) matching what the Python one matches: Python's
    `(?!\\n)$` is ECMAScript's `$`; a bare Python `$` also matches before a final newline."""
    for end, ecma in ((r"(?!\n)$", "$"), ("$", r"\n?$")):
        if python_pattern.endswith(end) and not python_pattern.endswith("\\" + end):
            pattern = python_pattern[: -len(end)] + ecma
            break
    else:
        pattern = python_pattern
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
    return {"$ref": f"#/components/schemas/{name}"}


def string(pattern: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "pattern": ecma_pattern(pattern), **extra}


def param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


RUN_ID = string(schemas.RUN_ID_PATTERN, description="a run id (UUID, any letter case)")
TIMESTAMP = {
    "anyOf": [{"type": "string", "maxLength": 40}, {"type": "integer", "minimum": schemas.EARLIEST_MS}]
}
RUN_PATH = param("run_id", "path", RUN_ID, "the run; anything that is not a run id names none: 404")
X_USER = param("X-User", "header", string(schemas.USER_PATTERN), "the user; `anonymous` when absent")
KEY = param(
    http.IDEMPOTENCY_HEADER,
    "header",
    {"type": "string", "pattern": "^[!-~]{1,128}$"},
    "sent again with the same key, the request is answered, not run again",
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
    low, high, default = bounds
    limit = {"type": "integer", "minimum": low, "maximum": high, "default": default}
    token = "the previous page's `nextKey` (signed: another query's is a 400)"
    return [
        param("limit", "query", limit, f"page size of {name}"),
        param("nextKey", "query", {"type": "string"}, token),
        param("lastKey", "query", {"type": "string"}, "alias of `nextKey`"),
    ]


def answer(
    status: str, schema: dict[str, Any] | None, description: str, content: str = JSON
) -> dict[str, Any]:
    body = {"content": {content: {"schema": schema}}} if schema is not None else {}
    return {status: {"description": description, **body}}


def errors_of(*classes: type[errors.ApiError], db: bool = True) -> dict[str, Any]:
    """The error answers of a route: those named, and what every route may answer."""
    every = (errors.PayloadTooLarge, errors.UnsupportedMediaType, *((errors.Unavailable,) if db else ()))
    out: dict[str, Any] = {}
    for error in (*classes, *every):
        codes = [e.code for e in errors.ANSWERS if e.status == error.status]
        out[str(error.status)] = {
            "description": " or ".join(f"`{c}`" for c in codes),
            "content": {JSON: {"schema": ref("Error")}},
        }
    return out


def op(
    summary: str,
    ok: dict[str, Any],
    *raised: type[errors.ApiError],
    params: tuple[dict[str, Any], ...] = (),
    body: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": list(params),
        "responses": {**ok, **errors_of(*raised, db=extra.pop("db", True))},
        **extra,
    }
    if body is not None:  # POST bodies are JSON, even empty ones (415 otherwise)
        operation["requestBody"] = {"required": body != {}, "content": {JSON: {"schema": body}}}
    return operation


def operations() -> dict[str, dict[str, dict[str, Any]]]:
    """path -> method -> operation: every route of app.py (a test holds them equal)."""
    bad, missing, conflict = errors.BadRequest, errors.NotFound, errors.RunNotRunning
    posted = (bad, errors.IdempotencyKeyReused, errors.RequestInProgress)
    readings_query = (
        param("runId", "query", RUN_ID, "the run"),
        param(
            "sensorId",
            "query",
            string(schemas.SENSOR_ID_PATTERN),
            "the sensor; alone, each run that declared it, newest first, then its readings without a run",
        ),
        param("type", "query", string(schemas.TYPE_PATTERN), "the type, e.g. `temperature`"),
        *(
            param(name, "query", TIMESTAMP, f"{what} timestamp, ISO-8601 or epoch ms")
            for name, what in (
                ("from", "earliest"),
                ("to", "latest"),
                ("startDate", "earliest"),
                ("endDate", "latest"),
            )
        ),
        param("order", "query", {"type": "string", "enum": ["asc", "desc"], "default": "desc"}, "time order"),
        *page("readings", schemas.READINGS_PAGE),
    )
    readings = {
        "get": op(
            "Readings of a run or a sensor, in time order",
            answer("200", ref("ReadingPage"), "A page"),
            bad,
            params=readings_query,
        ),
        "post": op(
            f"Store one reading, a measurement object, or up to {schemas.MAX_BATCH_READINGS} of either",
            answer(
                "201",
                {"anyOf": [ref("ReadingView"), ref("Ingested")]},
                "The reading, or how many were stored",
            ),
            *posted,
            missing,
            conflict,
            params=(X_USER, param("X-Run-Id", "header", RUN_ID, "the run of readings that name none"), KEY),
            body=ref("ReadingsBody"),
        ),
    }
    csv_answer = {
        **answer("200", {"type": "string"}, "The CSV (`X-Export-Complete`, `X-Next-Key`)", "text/csv"),
        **answer("303", None, "Too large for Lambda: `Location` is a presigned URL of it"),
    }
    zip_answer = {
        **answer("200", {"type": "string", "format": "binary"}, "The ZIP", "application/zip"),
        **answer("303", None, "Too large for Lambda: `Location` is a presigned URL of it"),
    }
    series_params = (
        param("runId", "query", RUN_ID, "the run (required)"),
        param("sensorId", "query", string(schemas.SENSOR_ID_PATTERN), "the sensor (required)"),
        param("type", "query", string(schemas.TYPE_PATTERN), "the type (default temperature)"),
        param("interval", "query", string(analytics.INTERVAL_PATTERN), "bucket size, e.g. 10s"),
        param("agg", "query", {"type": "string", "enum": list(analytics.AGGREGATES)}, "aggregate per bucket"),
        param("from", "query", TIMESTAMP, "start (default: the run's start)"),
        param("to", "query", TIMESTAMP, "end, excluded (default: the run's end, or now)"),
    )
    return {
        "/": {
            "get": op("The run viewer page", answer("200", {"type": "string"}, "HTML", "text/html"), db=False)
        },
        "/viewer/{name}": {
            "get": op(
                "A file of the run viewer",
                answer("200", {"type": "string"}, "The file", "text/javascript"),
                missing,
                params=(param("name", "path", {"type": "string"}, "viewer.js or viewer.css"),),
                db=False,
            )
        },
        "/api/health": {
            "get": op("Liveness, stage and version", answer("200", ref("Health"), "Up"), db=False)
        },
        "/api/openapi.json": {
            "get": op("This document", answer("200", {"type": "object"}, "OpenAPI 3.1"), db=False)
        },
        "/api/runs/can-start": {
            "get": op(
                "Whether a run can start now",
                answer("200", ref("CanStart"), "The run limit and how full it is"),
            )
        },
        "/api/runs/start": {
            "post": op(
                "Start a run",
                answer("201", ref("RunView"), "The run"),
                *posted,
                errors.RunLimitReached,
                params=(X_USER, KEY),
                body=ref("RunParams"),
            )
        },
        "/api/runs": {
            "get": op(
                "Runs, newest first",
                answer("200", ref("RunPage"), "A page"),
                bad,
                params=(
                    param(
                        "status",
                        "query",
                        {"type": "string", "enum": list(RUN_STATUSES)},
                        "only runs of this status",
                    ),
                    param("user", "query", string(schemas.USER_PATTERN), "only this user's runs"),
                    *page("runs", schemas.RUNS_PAGE),
                ),
            )
        },
        "/api/runs/all": {
            "get": op(
                "The newest runs (at most 1000)",
                answer("200", {"type": "array", "items": ref("RunView")}, "Runs"),
            )
        },
        "/api/runs/running": {
            "get": op(
                "The RUNNING runs (overdue ones are timed out first)",
                answer("200", {"type": "array", "items": ref("RunView")}, "Runs"),
            )
        },
        "/api/runs/interrupt-all": {
            "post": op(
                "Interrupt every RUNNING run (operators)",
                answer("200", ref("Interrupted"), "How many"),
                errors.Forbidden,
                *posted,
                params=(param("x-api-key", "header", {"type": "string"}, "the stage's admin API key"), KEY),
                security=[{"adminApiKey": []}],
            )
        },
        "/api/runs/{run_id}": {
            "get": op("One run", answer("200", ref("RunView"), "The run"), missing, params=(RUN_PATH,))
        },
        "/api/runs/{run_id}/finish": {
            "post": op(
                "Finish a run: SUCCESS (or COMPLETED) or FAILED",
                answer("200", ref("RunView"), "The ended run"),
                *posted,
                missing,
                conflict,
                params=(RUN_PATH, KEY),
                body=ref("FinishRunRequest"),
            )
        },
        "/api/runs/{run_id}/stats": {
            "get": op(
                "Statistics of a run's readings per sensor and type",
                answer("200", ref("RunStatsView"), "The figures; `complete` and `note` say how far they go"),
                missing,
                params=(RUN_PATH,),
            )
        },
        "/api/runs/{run_id}/readings.csv": {
            "get": op(
                "A run's readings as CSV, oldest first",
                csv_answer,
                bad,
                missing,
                params=(
                    RUN_PATH,
                    param("nextKey", "query", {"type": "string"}, "where the previous part stopped"),
                ),
            )
        },
        "/api/sensors/data": readings,
        "/sensors/data": {**readings},  # the older frontend's path
        "/api/sensors/series": {
            "get": op(
                "One series aggregated per time bucket",
                answer("200", ref("SeriesAnswer"), "The buckets"),
                bad,
                missing,
                params=series_params,
            )
        },
        "/api/sensors/latest": {
            "get": op(
                "The last reading of each sensor and type of a run",
                answer("200", ref("LatestView"), "The readings"),
                bad,
                missing,
                params=(param("runId", "query", RUN_ID, "the run (required)"),),
            )
        },
        "/api/reports/download": {
            "get": op(
                "A ZIP of the newest finished runs",
                zip_answer,
                bad,
                params=(param("runId", "query", RUN_ID, "also this run's readings"),),
            )
        },
        "/infra/latest-deployment": {
            "get": op(
                "Never a deployment (another service's route)",
                answer("200", ref("NoDeployment"), "None"),
                db=False,
            )
        },
    }


def document() -> dict[str, Any]:
    schemas_of, components = msgspec.json.schema_components(
        STRUCTS, ref_template="#/components/schemas/{name}"
    )
    components["ReadingsBody"] = schemas_of[
        STRUCTS.index(schemas.ReadingsBody)
    ]  # a union: no name of its own
    paths = operations()
    for path, methods in paths.items():
        for method, operation in methods.items():
            words = (
                re.sub(r"[^A-Za-z0-9]+", " ", path.replace("{", "").replace("}", "")).title().replace(" ", "")
            )
            methods[method] = {"operationId": method + (words or "Root"), **operation}
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
