"""The OpenAPI document (iot_playground/openapi.py): every route of app.py and nothing else,
committed as generated, valid OpenAPI 3.1, with patterns that mean in ECMAScript what
they mean to the app. The fuzzing against the local stack is tests/test_openapi_fuzz.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import jsonschema_rs
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from chalicelib import analytics, http, schemas
from iot_playground import openapi

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def app_routes() -> dict[str, list[str]]:
    """path -> methods, as Chalice serves them (CORS preflights aside)."""
    from app import app

    routes = {path: sorted(set(entries) - {"OPTIONS"}) for path, entries in app.routes.items()}
    return {path: methods for path, methods in routes.items() if methods}


def documented_routes() -> dict[str, list[str]]:
    return {
        path: sorted(method.upper() for method in item if method in HTTP_METHODS)
        for path, item in openapi.document()["paths"].items()
    }


def test_the_document_has_every_route_and_no_other() -> None:
    served, documented = app_routes(), documented_routes()
    missing = {p: m for p, m in served.items() if documented.get(p) != m}
    extra = {p: m for p, m in documented.items() if served.get(p) != m}
    assert not missing, f"routes of app.py missing from (or different in) the document: {missing}"
    assert not extra, f"documented routes that app.py does not serve: {extra}"


def test_the_committed_document_is_the_generated_one() -> None:
    committed = json.loads(openapi.DOCUMENT.read_text(encoding="utf-8"))
    assert committed == openapi.document(), "docs/openapi.json is stale: run `make openapi`"


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.document()
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_operation_ids_are_unique() -> None:
    ids = [op["operationId"] for item in openapi.document()["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_links_name_operations_and_their_parameters() -> None:
    document = openapi.document()
    operations = {op["operationId"]: op for item in document["paths"].values() for op in item.values()}
    linked = set()
    for item in document["paths"].values():
        for operation in item.values():
            for response in operation["responses"].values():
                for name, link in response.get("links", {}).items():
                    target = operations[link["operationId"]]
                    parameters = {f"{p['in']}.{p['name']}" for p in target.get("parameters", [])}
                    assert set(link["parameters"]) <= parameters, name
                    linked.add(name)
    # A started run leads schemathesis (tests/test_openapi_fuzz.py) to its reads, readings and finish.
    assert {"GetRun", "PostReading", "GetReadings", "GetStats", "FinishRun"} <= linked


def test_every_error_answer_is_the_error_shape_and_the_apps_table() -> None:
    from chalicelib.schemas import ANSWERS

    statuses = {str(error.status) for error in ANSWERS}
    for path, item in openapi.document()["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert {"413", "415"} <= codes, f"{method.upper()} {path}"
            if method == "post":
                assert {"400", "409", "422"} <= codes, f"{method.upper()} {path}"
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert status in statuses
                    assert response["content"] == {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    }


def test_the_admin_route_asks_for_the_key() -> None:
    operation = openapi.document()["paths"]["/api/runs/interrupt-all"]["post"]
    assert operation["security"] == [{"adminApiKey": []}]
    assert "403" in operation["responses"]
    scheme = openapi.document()["components"]["securitySchemes"]["adminApiKey"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "x-api-key"}


def test_the_api_serves_the_document(client: Any) -> None:
    response = client.http.get("/api/openapi.json", headers={"Host": "api.example.com"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(response.body) == {**openapi.document(), "servers": [{"url": "http://api.example.com"}]}


@pytest.mark.parametrize(
    ("path", "bounds", "query"),
    [
        ("/api/runs", schemas.RUNS_PAGE, ""),
        ("/api/sensors/data", schemas.READINGS_PAGE, "&sensorId=s1"),
    ],
)
def test_documented_page_limits_are_the_routes(
    client: Any, path: str, bounds: tuple[int, int, int], query: str
) -> None:
    low, high, _ = bounds
    for limit, status in ((low - 1, 400), (low, 200), (high, 200), (high + 1, 400)):
        assert client.http.get(f"{path}?limit={limit}{query}").status_code == status, limit
    documented = next(
        p["schema"] for p in openapi.document()["paths"][path]["get"]["parameters"] if p["name"] == "limit"
    )
    assert (documented["minimum"], documented["maximum"], documented["default"]) == bounds


def test_idempotency_key_pattern_is_the_apps() -> None:
    documented = openapi.KEY["schema"]["pattern"]
    pattern = re.compile(documented.removeprefix("^").removesuffix("$"))
    for key in ("k", "x" * 128, "x" * 129, "a b", "é", "", "abc\n"):
        assert bool(pattern.fullmatch(key)) == bool(http._KEY.fullmatch(key)), key


# ---- regex dialects ----------------------------------------------------------

PYTHON_PATTERNS = (
    schemas.SENSOR_ID_PATTERN,
    schemas.USER_PATTERN,
    schemas.TYPE_PATTERN,
    schemas.RUN_ID_PATTERN,
    analytics.INTERVAL_PATTERN,
)
UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"
PROBES = (
    "", "a", "s1", "sensor-1", "sensor-1:2.b_c", "alice@example.com", "temperature", "x" * 32, "x" * 33,
    "x" * 64, "x" * 65, UUID, UUID.upper(), UUID[:-1], UUID + "0", "a b", "é", "a/b", "a$", "^a",
    "10s", "500ms", "5m", "1h", "0s", "01s", "999999999h", "1000000000h", "10S", "1.5s",
)  # fmt: skip


def probes() -> list[str]:
    """Each probe as is and with the newlines a Python `$` lets through."""
    return [variant for probe in PROBES for variant in (probe, probe + "\n", "\n" + probe, probe + "\n\n")]


def all_patterns(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["pattern"]] if isinstance(value.get("pattern"), str) else []
        return found + [p for key, item in value.items() if key != "pattern" for p in all_patterns(item)]
    if isinstance(value, list):
        return [p for item in value for p in all_patterns(item)]
    return []


def test_the_document_has_only_translated_patterns() -> None:
    known = {openapi.ecma_pattern(p) for p in PYTHON_PATTERNS} | {openapi.KEY["schema"]["pattern"]}
    assert set(all_patterns(openapi.document())) <= known


@pytest.mark.parametrize("python_pattern", PYTHON_PATTERNS)
def test_translated_patterns_accept_what_the_app_accepts(python_pattern: str) -> None:
    """jsonschema-rs reads `pattern` as JSON Schema says (`$` is the end of the string)."""
    validator = jsonschema_rs.validator_for(
        {"type": "string", "pattern": openapi.ecma_pattern(python_pattern)}
    )
    for probe in probes():
        assert validator.is_valid(probe) == bool(re.match(python_pattern, probe)), repr(probe)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node for an ECMAScript regex engine")
def test_translated_patterns_are_ecmascript() -> None:
    """Each pattern of the document compiled by an ECMAScript engine, with the `u` flag as JSON
    Schema asks, against the probes: the same answers as the app's Python patterns."""
    cases = [{"ecma": openapi.ecma_pattern(p), "probes": probes()} for p in PYTHON_PATTERNS]
    script = (
        "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(cases.map(c => c.probes.map(p => new RegExp(c.ecma, 'u').test(p)))));"
    )
    result = subprocess.run(
        ["node", "-e", script],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    for python_pattern, answers in zip(PYTHON_PATTERNS, json.loads(result.stdout), strict=True):
        assert answers == [bool(re.match(python_pattern, probe)) for probe in probes()], python_pattern


@pytest.mark.parametrize(
    ("python", "ecma"),
    [
        (r"^[a-z]{1,3}(?!\n)$", r"^[a-z]{1,3}$"),
        (r"^[a-z]{1,3}$", r"^[a-z]{1,3}\n?$"),  # what a bare Python `$` lets through
        (r"^a\$", r"^a\$"),
    ],
)
def test_ecma_pattern_translates_the_end_anchors(python: str, ecma: str) -> None:
    assert openapi.ecma_pattern(python) == ecma


@pytest.mark.parametrize("python", [r"^(?P<x>a)$", r"^(?i)a$", r"^a\Zb", r"[a-z]+$", r"^(?>a)$"])
def test_ecma_pattern_refuses_what_it_cannot_translate(python: str) -> None:
    with pytest.raises(ValueError):
        openapi.ecma_pattern(python)
