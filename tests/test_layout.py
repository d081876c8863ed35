"""The import rules, stated once: what each part of the project may import.

- `chalicelib/` (the Lambda package, with app.py) imports the standard library, what the Lambda
  runtime and the package provide (chalice, botocore, msgspec, Powertools) and itself: never
  the tools, the tests or the benchmarks;
- the tools (`iot_playground/`) and the benchmarks may use the app; nothing imports the tests;
- no file takes a private name (`_x`) of Chalice or botocore, nor reads the Chalice CLI's click context.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.helpers import ROOT

LAMBDA_PACKAGE = {
    "chalice",
    "botocore",
    "msgspec",
    "aws_lambda_powertools",
    "chalicelib",
    "mypy_boto3_dynamodb",
}


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in the file, in functions too."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def sources(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))]


def test_the_lambda_package_imports_only_what_the_runtime_and_the_package_have():
    for path in [ROOT / "app.py", *sources("chalicelib")]:
        for module, _ in imports(path):
            top = module.split(".")[0]
            assert top in sys.stdlib_module_names or top in LAMBDA_PACKAGE, (
                f"{path.relative_to(ROOT)}: {module}"
            )


def test_nothing_imports_the_tests_and_no_file_takes_private_names_of_chalice_or_botocore():
    for path in [ROOT / "app.py", *sources("chalicelib", "iot_playground", "benchmarks", "tests")]:
        for module, names in imports(path):
            assert module.split(".")[0] != "tests" or path.is_relative_to(ROOT / "tests"), path
            if module.split(".")[0] in ("chalice", "botocore"):
                assert not [n for n in names if n.startswith("_")], (
                    f"{path.relative_to(ROOT)}: {module} {names}"
                )
        click_context = "get_current" + "_context"  # spelled apart, or this file would hold it
        assert click_context not in path.read_text(), path
