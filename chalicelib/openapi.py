"""The API's OpenAPI 3.1 document, built from the msgspec shapes in `schemas.py` and `run_shape.py`.

Request bodies and the run and reading objects are msgspec's own JSON Schema of
the structs the app decodes and encodes (`msgspec.json.schema_components`), so a
change to a struct changes the document. Query parameters and headers carry the
patterns and bounds `params.py` enforces, each pattern translated from Python's
regex dialect to the ECMAScript one JSON Schema uses (`ecma_pattern`). The shapes
that app.py builds as plain dicts are described by the structs below.

Served at `GET /api/openapi.json` (built on the first request, then kept) and
written to `docs/openapi.json` by `make openapi` (`iot-playground openapi`).
`tests/test_openapi.py` checks the document against app.routes, its committed copy
and the OpenAPI 3.1 schema; `tests/test_openapi_fuzz.py` runs schemathesis with it
against the local stack.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal

import msgspec

from chalicelib import clock, idempotency, run_shape, run_stats, schemas, series

PATH = "/api/openapi.json"
VERSION = "0.1.0"
DOCUMENT_FILE = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
JSON = "application/json"

# Route bounds that app.py passes to params.int_param.
RUNS_PAGE_LIMIT = (1, 100, 20)  # low, high, default
READINGS_PAGE_LIMIT = (1, 1000, 100)

API_KEY_HEADER = "x-api-key"
IDEMPOTENCY_HEADER = idempotency.HEADER
REPLAYED_HEADER = idempotency.REPLAYED_HEADER
# KEY_RE is applied with fullmatch.
IDEMPOTENCY_KEY_PATTERN = f"^(?:{idempotency.KEY_RE.pattern})$"


# ---- the shapes app.py builds as dicts ---------------------------------------


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
    items: list[run_shape.RunView]
    count: int
    nextKey: str | None


class ReadingPage(msgspec.Struct):
    items: list[schemas.ReadingView]
    count: int
    nextKey: str | None


class Ingested(msgspec.Struct):
    """A batch or a measurement object: how many distinct readings were stored."""

    ingested: int


class InterruptAllResult(msgspec.Struct):
    interrupted: int
    message: str
    timestamp: str


class NoDeployment(msgspec.Struct):
    success: Literal[False]
    message: str


class Error(msgspec.Struct):
    """Every error answer: `error` is a code (`ValidationError`, `NotFound`, `RunLimitReached`,
    ...), `message` says what is wrong. Some errors add fields: `currentRunning` and
    `maxAllowed` (RunLimitReached), `maxPerUser` (UserRunLimitReached), `status` (RunNotRunning)."""

    error: str
    message: str
    details: Any | msgspec.UnsetType = msgspec.UNSET


_STRUCTS: tuple[Any, ...] = (
    schemas.RunParams,
    schemas.FinishRunRequest,
    run_shape.RunView,
    schemas.ReadingsBody,
    schemas.ReadingView,
    Health,
    CanStart,
    RunPage,
    ReadingPage,
    Ingested,
    InterruptAllResult,
    NoDeployment,
    Error,
    series.Series,
    run_stats.RunStatsView,
    run_stats.LatestReadingsView,
)


# ---- regex dialects ----------------------------------------------------------

# Python-only syntax that has no same-meaning spelling here: named groups, inline flags,
# \A and \Z away from the ends, possessive quantifiers and atomic groups.
_PYTHON_ONLY = re.compile(r"\(\?P|\(\?[aiLmsux]|\\[AZ]|[*+?}]\+|\(\?>")


def ecma_pattern(python_pattern: str) -> str:
    """The ECMAScript regex (JSON Schema `pattern`) that accepts exactly the strings the
    Python one does with `re.match`/`re.search` (both are anchored by a leading `^`).

    The end anchors differ: Python's `$` also matches before a final newline, ECMAScript's
    only at the end. `(?!\\n)$` and `\\Z` are Python's end of the string, ECMAScript's `$`;
    a bare Python `$` is ECMAScript's `\\n?$`."""
    pattern = python_pattern
    if pattern.startswith(r"\A"):
        pattern = "^" + pattern[2:]
    for end, ecma in ((r"(?!\n)$", "$"), (r"\Z", "$"), ("$", r"\n?$")):
        if pattern.endswith(end) and not pattern.endswith("\\" + end):
            pattern = pattern[: -len(end)] + ecma
            break
    if not pattern.startswith("^"):
        raise ValueError(f"pattern {python_pattern!r} is not anchored at the start")
    if _PYTHON_ONLY.search(pattern):
        raise ValueError(f"pattern {python_pattern!r} has Python-only syntax")
    return pattern


def _string(python_pattern: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "pattern": ecma_pattern(python_pattern), **extra}


def _portable(schema: Any) -> Any:
    """msgspec's schema with each `pattern` (copied from `Meta(pattern=...)` as it is, in
    Python's dialect) in ECMAScript's, and docstrings (`description`) on one line."""
    if isinstance(schema, dict):
        return {key: _portable_value(key, value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_portable(item) for item in schema]
    return schema


def _portable_value(key: str, value: Any) -> Any:
    if key == "pattern" and isinstance(value, str):
        return ecma_pattern(value)
    if key == "description" and isinstance(value, str):
        return " ".join(value.split())
    return _portable(value)


# ---- building blocks ---------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
_REPLAYED = {
    REPLAYED_HEADER: {
        "description": f"`true` when this is the stored answer to an earlier request with the same"
        f" {IDEMPOTENCY_HEADER}",
        "schema": {"type": "string", "enum": ["true"]},
    }
}

# Shared responses (components/responses), by status.
_RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": _error(
        "Bad input: a malformed header, query parameter or body (`BadRequest`, `ValidationError`)."
    ),
    "Forbidden": _error(f"The admin API key is missing or wrong in `{API_KEY_HEADER}` (`Forbidden`)."),
    "NotFound": _error("No such resource (`NotFound`)."),
    "PayloadTooLarge": _error("The request body is over 1 MiB (`PayloadTooLarge`)."),
    "UnsupportedMediaType": _error(
        "A POST without `Content-Type: application/json` (with a body or without), or another method"
        " with a `Content-Type` other than `application/json` or `text/plain` (`UnsupportedMediaType`)."
    ),
    "IdempotencyKeyReused": _error(
        f"This {IDEMPOTENCY_HEADER} came with another body, user or route (`IdempotencyKeyReused`)."
    ),
    "TooManyRequests": _json(
        _ref("Error"),
        "Over the deployed stage's throttle (`TooManyRequests`, answered by API Gateway).",
        _RETRY_AFTER,
    ),
    "InternalError": _error("An unexpected failure (`InternalError`); never the answer to bad input."),
    "Unavailable": _json(
        _ref("Error"),
        "DynamoDB kept refusing after the retries (`ServiceUnavailable`); send the request again"
        " after `Retry-After` seconds. A batch of readings says in `details` how many were stored.",
        _RETRY_AFTER,
    ),
}
_STATUS = {
    "BadRequest": "400",
    "Forbidden": "403",
    "NotFound": "404",
    "PayloadTooLarge": "413",
    "UnsupportedMediaType": "415",
    "IdempotencyKeyReused": "422",
    "TooManyRequests": "429",
    "InternalError": "500",
    "Unavailable": "503",
}


def _shared(*names: str, db: bool = True) -> dict[str, Any]:
    """Shared responses by status: those named, and what every route can answer (413, 415, 429,
    500; 503 when it reads or writes DynamoDB)."""
    every = ("PayloadTooLarge", "UnsupportedMediaType", "TooManyRequests", "InternalError")
    names = (*names, *every, *(("Unavailable",) if db else ()))
    return {_STATUS[name]: {"$ref": f"#/components/responses/{name}"} for name in names}


def _post_errors(*names: str) -> dict[str, Any]:
    """What every POST can answer besides its own outcomes."""
    return _shared("BadRequest", "IdempotencyKeyReused", *names)


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _header(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description, "schema": schema}


def _limit(bounds: tuple[int, int, int]) -> dict[str, Any]:
    low, high, default = bounds
    return _query(
        "limit",
        {"type": "integer", "minimum": low, "maximum": high, "default": default},
        f"page size, {low}..{high} (ASCII digits)",
    )


def _page_token(name: str) -> dict[str, Any]:
    return _query(
        name,
        {"type": "string"},
        "the `nextKey` of the previous page (opaque, signed; a token of another query is a 400)"
        + ("; alias of `nextKey`" if name == "lastKey" else ""),
    )


_TIMESTAMP = {
    "anyOf": [
        {"type": "string", "format": "date-time", "maxLength": 40},
        {"type": "integer", "minimum": clock.EARLIEST_MS, "maximum": clock.LATEST_MS - 1},
    ]
}
_RUN_ID = _string(schemas.RUN_ID_PATTERN, description="a run id (UUID, any letter case)")
_USER = _string(schemas.USER_PATTERN)

_X_USER = _header("X-User", _USER, "the user; `anonymous` when absent or empty")
_IDEMPOTENCY_KEY = _header(
    IDEMPOTENCY_HEADER,
    {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
    "send the request again with the same key to get the first answer back instead of acting twice",
)
_RUN_ID_PATH = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "description": "the run id; anything that is not a run id is a 404",
    "schema": _RUN_ID,
}
_RUN_ID_PATH_400 = {
    **_RUN_ID_PATH,
    "description": "the run id; anything that is not a run id (UUID) is a 400",
}
_DOWNLOAD_REDIRECT = {
    "description": "The download is larger than a Lambda response carries (over 5 MiB as sent): it"
    " was put in the stage's reports bucket, and `Location` is a presigned GET URL for it, valid"
    " 300 s (browsers follow it; the object is deleted after a day). The body says the same.",
    "headers": {
        "Location": {"description": "presigned S3 GET URL of the download", "schema": {"type": "string"}}
    },
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "required": ["location", "expiresIn"],
                "properties": {
                    "location": {"type": "string", "description": "the same URL as `Location`"},
                    "expiresIn": {"type": "integer", "description": "seconds the URL stays valid"},
                },
            }
        }
    },
}
_EXPORT_BOUND = (
    " One request reads at most 300 pages of 1000 readings, and none after 8 s (see the README,"
    ' "Bounded work per request").'
)
_JSON_ONLY = " Sent with `Content-Type: application/json`, with a body or without (415 otherwise)."


def _json_body(schema: dict[str, Any], description: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "description": description, "content": {JSON: {"schema": schema}}}


# What a client does next with a run it started (also how schemathesis chains requests).
_RUN_ID_OUT = "$response.body#/id"
_RUN_LINKS = {
    "GetRun": {"operationId": "getApiRunsRunId", "parameters": {"path.run_id": _RUN_ID_OUT}},
    "FinishRun": {"operationId": "postApiRunsRunIdFinish", "parameters": {"path.run_id": _RUN_ID_OUT}},
    "PostReading": {
        "operationId": "postApiSensorsData",
        "description": "a reading of the run's first sensor",
        "parameters": {"header.X-Run-Id": _RUN_ID_OUT},
        "requestBody": {"sensorId": "$response.body#/params/sensorIds/0", "reading": 21.5},
    },
    "GetReadings": {"operationId": "getApiSensorsData", "parameters": {"query.runId": _RUN_ID_OUT}},
    "GetSeries": {
        "operationId": "getApiSensorsSeries",
        "description": "the series of the run's first sensor",
        "parameters": {"query.runId": _RUN_ID_OUT, "query.sensorId": "$response.body#/params/sensorIds/0"},
    },
    "DownloadReport": {"operationId": "getApiReportsDownload", "parameters": {"query.runId": _RUN_ID_OUT}},
    "DownloadReadings": {
        "operationId": "getApiRunsRunIdReadingsCsv",
        "parameters": {"path.run_id": _RUN_ID_OUT},
    },
    "GetRunStats": {"operationId": "getApiRunsRunIdStats", "parameters": {"path.run_id": _RUN_ID_OUT}},
    "GetLatestReadings": {"operationId": "getApiSensorsLatest", "parameters": {"query.runId": _RUN_ID_OUT}},
}

_STATS_RULE = (
    f"Bounded: one call folds at most {run_stats.MAX_STATS_QUERY_PAGES} pages of"
    f" {run_stats.STATS_PAGE_LIMIT} readings in time order. While the run is RUNNING (or ended less"
    " than RUN_STATUS_CACHE_SECONDS + 60 s ago) every call folds afresh and keeps nothing: exact for"
    " the readings stored at that moment when they fit the bound (`complete: true`), otherwise the"
    " figures of the oldest readings (`complete: false`). Once the run's readings are final"
    " (`final: true`) the fold is kept and each call continues it until `complete: true`; from then on"
    " the answer is read, not computed. `note` says which case applies."
)

_IN_PROGRESS = (
    f"`RequestInProgress`: an earlier request with this {IDEMPOTENCY_HEADER} is still being answered"
    " (with `Retry-After`)"
)


# ---- operations ----------------------------------------------------------------


def _operations() -> dict[str, dict[str, dict[str, Any]]]:
    """path -> method -> operation. Keep in step with app.py (a test compares them)."""
    readings_get: dict[str, Any] = {
        "tags": ["readings"],
        "summary": "Readings of a run and/or a sensor",
        "description": "`runId` or `sensorId` is required (400 otherwise); `from` must not be later"
        " than `to`. With `type`, a page may hold fewer than `limit` items and still have a `nextKey`.",
        "parameters": [
            _query("runId", _RUN_ID, "the run"),
            _query("sensorId", _string(schemas.SENSOR_ID_PATTERN), "the sensor"),
            _query("type", _string(schemas.TYPE_PATTERN), "the measurement type, e.g. `temperature`"),
            _query("from", _TIMESTAMP, "earliest timestamp (ISO-8601 or epoch milliseconds, 2000..2099)"),
            _query("to", _TIMESTAMP, "latest timestamp (ISO-8601 or epoch milliseconds, 2000..2099)"),
            _query("startDate", _TIMESTAMP, "alias of `from`"),
            _query("endDate", _TIMESTAMP, "alias of `to`"),
            _query("order", {"type": "string", "enum": ["asc", "desc"], "default": "desc"}, "time order"),
            _limit(READINGS_PAGE_LIMIT),
            _page_token("nextKey"),
            _page_token("lastKey"),
        ],
        "responses": {"200": _json(_ref("ReadingPage"), "A page of readings."), **_shared("BadRequest")},
    }
    readings_post: dict[str, Any] = {
        "tags": ["readings"],
        "summary": "Store readings",
        "description": "One reading `{sensorId, reading, type?}` (answered with the stored reading),"
        " one measurement object `{sensorId, temperature?, humidity?, pressure?}` or an array of"
        f" 1..{schemas.MAX_BATCH_READINGS} of either (answered with `{{ingested}}`). A reading of a run"
        " (`runId`, or the `X-Run-Id` header) needs the run RUNNING and the sensor among its `sensorIds`."
        + _JSON_ONLY,
        "parameters": [
            _X_USER,
            _header("X-Run-Id", _RUN_ID, "the run of readings that do not name one"),
            _IDEMPOTENCY_KEY,
        ],
        "requestBody": _json_body(_ref("ReadingsBody"), "the readings"),
        "responses": {
            "201": _json(
                {"anyOf": [_ref("ReadingView"), _ref("Ingested")]},
                "Stored: the reading, or how many distinct readings a batch or measurement object held.",
                _REPLAYED,
            ),
            **_post_errors(),
            "404": _error("The run does not exist (`NotFound`)."),
            "409": _json(
                _ref("Error"),
                "The run is not RUNNING (`RunNotRunning`, with its `status`), or " + _IN_PROGRESS + ".",
                _RETRY_AFTER,
            ),
        },
    }
    operations: dict[str, dict[str, dict[str, Any]]] = {
        "/": {
            "get": {
                "tags": ["viewer"],
                "summary": "The run viewer page",
                "description": "A single HTML page that lists runs and charts a run's readings;"
                " `/?runId=<id>` opens a run (read by the page's script).",
                "parameters": [_query("runId", {"type": "string"}, "the run the page opens")],
                "responses": {
                    "200": {
                        "description": "The page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    **_shared(db=False),
                },
            }
        },
        "/viewer/{name}": {
            "get": {
                "tags": ["viewer"],
                "summary": "A script or stylesheet of the run viewer",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": _viewer_assets()},
                    },
                    _query("v", {"type": "string"}, "content version (cache busting), ignored"),
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {
                            "text/javascript": {"schema": {"type": "string"}},
                            "text/css": {"schema": {"type": "string"}},
                        },
                    },
                    "404": _error("No such file (`NotFound`)."),
                    **_shared(db=False),
                },
            }
        },
        "/api/health": {
            "get": {
                "tags": ["health"],
                "summary": "Liveness, stage and version",
                "responses": {"200": _json(_ref("Health"), "The API answers."), **_shared(db=False)},
            }
        },
        PATH: {
            "get": {
                "tags": ["health"],
                "summary": "This document",
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["openapi", "info", "paths"]},
                        "The OpenAPI 3.1 document of this API.",
                    ),
                    **_shared(db=False),
                },
            }
        },
        "/api/runs/can-start": {
            "get": {
                "tags": ["runs"],
                "summary": "Whether a run can start now",
                "responses": {"200": _json(_ref("CanStart"), "The run slots."), **_shared()},
            }
        },
        "/api/runs/start": {
            "post": {
                "tags": ["runs"],
                "summary": "Start a run",
                "description": "`sensorIds` must not repeat (compared as text)." + _JSON_ONLY,
                "parameters": [_X_USER, _IDEMPOTENCY_KEY],
                "requestBody": _json_body(
                    {
                        "anyOf": [
                            _ref("RunParams"),
                            {
                                "type": "object",
                                "properties": {"params": _ref("RunParams")},
                                "required": ["params"],
                            },
                        ]
                    },
                    "the run's parameters, or the same under `params`",
                ),
                "responses": {
                    "201": {**_json(_ref("RunView"), "The run, RUNNING.", _REPLAYED), "links": _RUN_LINKS},
                    **_post_errors(),
                    "409": _json(
                        _ref("Error"),
                        "No slot: `RunLimitReached` (with `currentRunning` and `maxAllowed`),"
                        " `UserRunLimitReached` (with `maxPerUser`), or " + _IN_PROGRESS + ".",
                        _RETRY_AFTER,
                    ),
                },
            }
        },
        "/api/runs": {
            "get": {
                "tags": ["runs"],
                "summary": "Runs, newest first, a page at a time",
                "parameters": [
                    _limit(RUNS_PAGE_LIMIT),
                    _query(
                        "status", {"type": "string", "enum": list(run_shape.RUN_STATUSES)}, "only this status"
                    ),
                    _query("user", _USER, "only this user's runs"),
                    _page_token("nextKey"),
                    _page_token("lastKey"),
                ],
                "responses": {"200": _json(_ref("RunPage"), "A page of runs."), **_shared("BadRequest")},
            }
        },
        "/api/runs/all": {
            "get": {
                "tags": ["runs"],
                "summary": "The newest 1000 runs, newest first",
                "responses": {
                    "200": _json({"type": "array", "items": _ref("RunView")}, "The runs."),
                    **_shared(),
                },
            }
        },
        "/api/runs/running": {
            "get": {
                "tags": ["runs"],
                "summary": "The RUNNING runs, newest first (overdue ones are timed out first)",
                "responses": {
                    "200": _json({"type": "array", "items": _ref("RunView")}, "The runs."),
                    **_shared(),
                },
            }
        },
        "/api/runs/interrupt-all": {
            "post": {
                "tags": ["runs"],
                "summary": "Interrupt every RUNNING run (administrators)",
                "description": f"Needs the admin API key in `{API_KEY_HEADER}`." + _JSON_ONLY,
                "security": [{"adminApiKey": []}],
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": _json_body({}, "none needed; ignored", required=False),
                "responses": {
                    "200": _json(_ref("InterruptAllResult"), "How many runs were interrupted.", _REPLAYED),
                    **_post_errors("Forbidden"),
                    "409": _json(_ref("Error"), _IN_PROGRESS + ".", _RETRY_AFTER),
                },
            }
        },
        "/api/runs/{run_id}": {
            "get": {
                "tags": ["runs"],
                "summary": "One run",
                "parameters": [_RUN_ID_PATH],
                "responses": {
                    "200": _json(_ref("RunView"), "The run."),
                    "404": _error("No such run (`NotFound`)."),
                    **_shared(),
                },
            }
        },
        "/api/runs/{run_id}/finish": {
            "post": {
                "tags": ["runs"],
                "summary": "Finish a run",
                "description": "`status` is `SUCCESS`, `COMPLETED` (stored as SUCCESS) or `FAILED`, in any"
                " letter case; the message is kept for FAILED only. An empty body finishes with SUCCESS."
                + _JSON_ONLY,
                "parameters": [_RUN_ID_PATH, _IDEMPOTENCY_KEY],
                "requestBody": _json_body(_ref("FinishRunRequest"), "how the run ended", required=False),
                "responses": {
                    "200": _json(_ref("RunView"), "The run, ended.", _REPLAYED),
                    **_post_errors(),
                    "404": _error("No such run (`NotFound`)."),
                    "409": _json(
                        _ref("Error"),
                        "The run is not RUNNING (`RunNotRunning`, with its `status`), or "
                        + _IN_PROGRESS
                        + ".",
                        _RETRY_AFTER,
                    ),
                },
            }
        },
        "/api/runs/{run_id}/stats": {
            "get": {
                "tags": ["analytics"],
                "summary": "Statistics of a run's readings, per sensor and type",
                "description": "Per (sensor, type): count, min, max, mean, first and last timestamp, last"
                " value and the largest gap between consecutive readings (ms). Run totals: readings,"
                " sensors seen, min/max/mean over all readings; `expected` sensor rounds"
                " (floor(duration / interval) x declared sensors), `received` rounds (per declared sensor"
                " the count of its most frequent type, at most the rounds due: a measurement object of"
                " several types is one round) and `completeness` = received / expected (null when no"
                " round is due). " + _STATS_RULE,
                "parameters": [
                    {
                        "name": "run_id",
                        "in": "path",
                        "required": True,
                        "description": "the run id (UUID, any letter case); anything else is a 400",
                        "schema": _RUN_ID,
                    }
                ],
                "responses": {
                    "200": _json(_ref("RunStatsView"), "The run's statistics."),
                    "404": _error("No such run (`NotFound`)."),
                    **_shared("BadRequest"),
                },
            }
        },
        "/api/sensors/latest": {
            "get": {
                "tags": ["analytics"],
                "summary": "The last reading of each sensor and type of a run",
                "description": "`runId` is required (400 otherwise). From the same fold as"
                " `/api/runs/{run_id}/stats`, so the same rule applies: " + _STATS_RULE,
                "parameters": [{**_query("runId", _RUN_ID, "the run"), "required": True}],
                "responses": {
                    "200": _json(_ref("LatestReadingsView"), "The last reading per sensor and type."),
                    "404": _error("No such run (`NotFound`)."),
                    **_shared("BadRequest"),
                },
            }
        },
        "/api/sensors/data": {"get": readings_get, "post": readings_post},
        "/sensors/data": {
            "get": {**readings_get, "summary": readings_get["summary"] + " (alias of /api/sensors/data)"},
            "post": {**readings_post, "summary": readings_post["summary"] + " (alias of /api/sensors/data)"},
        },
        "/api/sensors/series": {
            "get": {
                "tags": ["analytics"],
                "summary": "One sensor's readings of one type in a run, aggregated per time bucket",
                "description": "Buckets tile [`from`, `to`): `from` inclusive, `to` exclusive; each bucket"
                " starts at `from` + i * `interval`, the last one is cut at `to`. Every bucket is listed;"
                " one without readings has `value: null` (for `count` too), as has a `sum` beyond the"
                " float range. `from`/`to` default to the run's span: `startedAt` to `finishedAt` included"
                f" (now while RUNNING). At most {series.MAX_BUCKETS} buckets (400 otherwise). Reads at"
                f" most {series.MAX_SERIES_QUERY_PAGES} pages of {series.SERIES_PAGE_SIZE} readings; a"
                " range holding more is answered in part: `complete: false` with the buckets read in"
                " full and `nextFrom`, to ask again with `from=<nextFrom>` (a 400 when not even the"
                " first bucket could be read in full).",
                "parameters": [
                    {**_query("runId", _RUN_ID, "the run"), "required": True},
                    {
                        **_query("sensorId", _string(schemas.SENSOR_ID_PATTERN), "the sensor"),
                        "required": True,
                    },
                    _query(
                        "type",
                        _string(schemas.TYPE_PATTERN, default=schemas.DEFAULT_READING_TYPE),
                        "the measurement type; one type per series",
                    ),
                    _query(
                        "interval",
                        _string(series.INTERVAL_PATTERN, default=series.DEFAULT_INTERVAL),
                        f"bucket width: {series.INTERVAL_FORMS}",
                    ),
                    _query(
                        "agg",
                        {
                            "type": "string",
                            "enum": list(series.AGGREGATES),
                            "default": series.DEFAULT_AGGREGATE,
                        },
                        "the aggregate of each bucket",
                    ),
                    _query(
                        "from",
                        _TIMESTAMP,
                        "start, inclusive (ISO-8601 or epoch milliseconds); default startedAt",
                    ),
                    _query(
                        "to",
                        _TIMESTAMP,
                        "end, exclusive (ISO-8601 or epoch milliseconds); default finishedAt + 1 ms"
                        " (now + 1 ms while RUNNING)",
                    ),
                ],
                "responses": {
                    "200": _json(_ref("Series"), "The buckets, complete or up to `nextFrom`."),
                    "404": _error("No such run (`NotFound`)."),
                    **_shared("BadRequest"),
                },
            }
        },
        "/api/runs/{run_id}/readings.csv": {
            "get": {
                "tags": ["reports"],
                "summary": "Every reading of a run as CSV, oldest first",
                "description": "Columns `sensorId,type,reading,timestamp,user` (UTF-8, CRLF rows); a text"
                " cell that could start a spreadsheet formula is prefixed with `'`."
                + _EXPORT_BOUND
                + " When that budget ends before the last reading, `X-Export-Complete` is `false` and"
                " `X-Next-Key` is the `nextKey` that goes on from there.",
                "parameters": [
                    _RUN_ID_PATH_400,
                    _query(
                        "nextKey",
                        {"type": "string"},
                        "the `X-Next-Key` of the previous part (opaque, signed; another query's is a 400)",
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The readings (attachment).",
                        "headers": {
                            "Content-Disposition": {
                                "description": 'attachment; filename="readings-<runId>.csv"',
                                "schema": {"type": "string"},
                            },
                            "X-Export-Complete": {
                                "description": "`true` when every reading up to the last is in the file",
                                "schema": {"type": "string", "enum": ["true", "false"]},
                            },
                            "X-Next-Key": {
                                "description": "with `X-Export-Complete: false`: `nextKey` of the rest",
                                "schema": {"type": "string"},
                            },
                        },
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    "303": _DOWNLOAD_REDIRECT,
                    "404": _error("No such run (`NotFound`)."),
                    **_shared("BadRequest"),
                },
            }
        },
        "/api/reports/download": {
            "get": {
                "tags": ["reports"],
                "summary": "A ZIP of the newest finished runs: summary.csv and each run's readings",
                "description": "`summary.csv` has one row per run (the newest `REPORT_RUNS`, default 20,"
                " finished runs, newest first): the run's fields, the stats of its readings, its `file` in"
                " the ZIP and `complete` (`false` when the request's budget ended before its last reading)."
                " `runs/<startedAt>-<runId>.csv` holds each run's readings as"
                " `/api/runs/{run_id}/readings.csv` does. With no finished run, the ZIP holds summary.csv"
                " with its header only." + _EXPORT_BOUND + " The runs share that budget, newest first.",
                "parameters": [
                    _query(
                        "runId", _RUN_ID, "also `readings-<runId>.csv`: that run's readings, finished or not"
                    )
                ],
                "responses": {
                    "200": {
                        "description": "The report (attachment).",
                        "headers": {
                            "Content-Disposition": {
                                "description": 'attachment; filename="iot-playground-report-<time>.zip"',
                                "schema": {"type": "string"},
                            }
                        },
                        "content": {"application/zip": {}},
                    },
                    "303": _DOWNLOAD_REDIRECT,
                    **_shared("BadRequest"),
                },
            }
        },
        "/infra/latest-deployment": {
            "get": {
                "tags": ["other"],
                "summary": "Never a deployment: deployments belong to the infrastructure service",
                "description": "The frontend polls this; `success: false` reads as no deployment.",
                "responses": {
                    "200": _json(_ref("NoDeployment"), "No deployment information on this API."),
                    **_shared(db=False),
                },
            }
        },
    }
    for path, methods in operations.items():
        for method, operation in methods.items():
            operation["operationId"] = _operation_id(method, path)
            operation["responses"] = dict(sorted(operation["responses"].items()))
    return operations


def _viewer_assets() -> list[str]:
    from chalicelib import viewer  # imports chalice's Response; only when the document is built

    return list(viewer.asset_names())


def _operation_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path.replace(".json", "")) or ["root"]
    return method + "".join(word[:1].upper() + word[1:] for word in words)


# ---- the document -----------------------------------------------------------------


@cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once per process)."""
    refs, components = msgspec.json.schema_components(_STRUCTS, ref_template="#/components/schemas/{name}")
    names = {struct: ref for struct, ref in zip(_STRUCTS, refs, strict=True)}
    components["ReadingsBody"] = names[schemas.ReadingsBody]  # a union: no name of its own
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "IoT Playground API",
            "version": VERSION,
            "description": "Simulation runs and sensor readings (AWS Chalice over DynamoDB). Errors are"
            ' `{"error": "<Code>", "message": "...", "details"?: ...}`; bad input is a 4xx, never a 5xx.'
            " A body over 1 MiB is a 413 on every route; POSTs need `Content-Type: application/json`."
            " A method a path does not serve is a 405 `MethodNotAllowed` with `Allow` (`make run`) or a"
            " 404 `NotFound` (API Gateway), as is a path that is not here. Timestamps are ISO-8601 UTC"
            " with milliseconds and `Z`.",
        },
        "tags": [
            {"name": name}
            for name in ("runs", "readings", "analytics", "reports", "health", "viewer", "other")
        ],
        "paths": _operations(),
        "components": {
            "schemas": _portable(dict(sorted(components.items()))),
            "responses": _RESPONSES,
            "securitySchemes": {
                "adminApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": API_KEY_HEADER,
                    "description": "the administrators' key (`ADMIN_API_KEY` of the stage)",
                }
            },
        },
    }


def served(base_url: str) -> dict[str, Any]:
    """The document as `GET /api/openapi.json` answers it: with the API's address as the
    client reached it (`scheme://host[/stage]`), so tools send requests there."""
    return {**document(), "servers": [{"url": base_url or "/"}]}


def document_text() -> str:
    """The document as `docs/openapi.json` holds it."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"
