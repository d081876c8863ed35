"""The rule between the domain and the HTTP layer (issue 12): domain modules raise plain
`errors.DomainError`s and import nothing of HTTP; `http_errors.ANSWERS` is the one place an
error class gets its status code and error code, and the OpenAPI document names each code."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import chalicelib
from chalicelib import errors, http_errors, openapi

CHALICELIB = Path(chalicelib.__file__).parent
# The HTTP layer inside chalicelib: what reads headers and query parameters, refuses requests
# before their route and turns errors into answers. app.py is HTTP layer too.
HTTP_LAYER = frozenset(
    {"chalicelib.http_errors", "chalicelib.http_surface", "chalicelib.params", "chalicelib.admin_key"}
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(CHALICELIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """Every module an import statement anywhere in the file (functions included) names,
    `from chalicelib import params` as `chalicelib.params`."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(CHALICELIB.rglob("*.py"))}


def test_no_domain_module_imports_the_http_layer():
    modules = _modules()
    assert modules.keys() >= HTTP_LAYER  # the layer's names are still right
    assert len(modules.keys() - HTTP_LAYER) > 20  # and the walk found the rest
    offending = {
        name: sorted(_imported(path) & HTTP_LAYER)
        for name, path in modules.items()
        if name not in HTTP_LAYER and _imported(path) & HTTP_LAYER
    }
    assert offending == {}


def _all_subclasses(base: type) -> set[type]:
    found: set[type] = set(base.__subclasses__())
    for cls in list(found):
        found |= _all_subclasses(cls)
    return found


def test_every_error_class_has_exactly_one_http_answer_and_the_domain_ones_carry_no_http():
    # Error classes anywhere in chalicelib count, not only those errors.py defines.
    for info in pkgutil.walk_packages(chalicelib.__path__, "chalicelib."):
        importlib.import_module(info.name)
    domain = _all_subclasses(errors.DomainError)
    http_only = _all_subclasses(http_errors.HttpError)
    assert domain and http_only
    # ANSWERS is keyed by the exact class: a class without its own row would be a 500.
    assert set(http_errors.ANSWERS) == domain | http_only
    assert not domain & http_only
    for cls in domain:
        assert cls.__module__ == "chalicelib.errors", cls
        assert not {"status_code", "code", "body"} & set(dir(cls)), cls
    for cls in http_only:
        assert cls.__module__ == "chalicelib.http_errors", cls


def _at(document: dict[str, Any], ref: str) -> dict[str, Any]:
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_error_code_is_documented_with_its_status():
    document = openapi.document()
    documented: set[tuple[str, str]] = set()
    for operations in document["paths"].values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                while "$ref" in response:
                    response = _at(document, response["$ref"])
                for code in re.findall(r"`(\w+)`", response.get("description", "")):
                    documented.add((status, code))
    overview = document["info"]["description"]
    for status, code in http_errors.ANSWERS.values():
        # A method no path serves has no operation to list its 405 under: the overview says it.
        assert (str(status), code) in documented or f"{status} `{code}`" in overview, (status, code)


def test_an_error_answers_its_row_of_the_table():
    error = errors.RunLimitReached("full", extra={"currentRunning": 5}, details={"x": 1})
    assert http_errors.status_code(error) == 409
    assert http_errors.body(error) == {
        "error": "RunLimitReached",
        "message": "full",
        "currentRunning": 5,
        "details": {"x": 1},
    }
    assert http_errors.headers(error) == {}
    assert http_errors.headers(errors.Unavailable("busy")) == {"Retry-After": "1"}
