"""The house's layout (README "Architecture"): imports only go down, and the Lambda package
holds only what the API runs.

Read from the source with `ast`, at every import statement (module level or inside a
function, TYPE_CHECKING or not): what a module may import is what the folder it lives in
may import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("app", "chalicelib", "iot_playground", "benchmarks", "tests")
# Per folder: the project packages its modules may import (besides their own folder).
# Read top-down: each folder may use those below it, never one beside or above it.
ALLOWED: dict[str, set[str]] = {
    "chalicelib": set(),
    "iot_playground.common": {"chalicelib"},
    "iot_playground.migration": {"chalicelib", "iot_playground.common"},
    # `make tables` moves old-layout readings before it drops the indexes that served them.
    "iot_playground.deploy": {"chalicelib", "iot_playground.common", "iot_playground.migration"},
    # The local stack makes its tables and bucket as `make tables` does.
    "iot_playground.local": {"chalicelib", "iot_playground.common", "iot_playground.deploy"},
    "iot_playground.clients": {"chalicelib", "iot_playground.common"},
    "iot_playground.cli": {
        "chalicelib",
        "iot_playground.common",
        "iot_playground.clients",
        "iot_playground.local",
        "iot_playground.deploy",
        "iot_playground.migration",
    },
    "iot_playground.__main__": {"iot_playground.cli"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def folder_of(module: str) -> str:
    """The ALLOWED key a module belongs to (the longest that prefixes it)."""
    keys = [k for k in ALLOWED if module == k or module.startswith(k + ".")]
    if not keys:
        if module == "iot_playground":
            return "iot_playground"
        raise AssertionError(f"{module} is in no folder of ALLOWED: add it to README 'Architecture' and here")
    return max(keys, key=len)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import of the project's own code."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: the project imports absolutely"
            base = node.module or ""
            names = [alias.name for alias in node.names]
            # `from pkg import module` imports that module.
            found += [(f"{base}.{name}", []) for name in names] + [(base, names)]
    return [(module, names) for module, names in found if module.split(".")[0] in PROJECT]


def sources() -> list[Path]:
    return [
        ROOT / "app.py",
        *sorted((ROOT / "chalicelib").rglob("*.py")),
        *sorted((ROOT / "iot_playground").rglob("*.py")),
    ]


def test_the_folders_are_what_the_readme_names():
    assert {
        p.name for p in (ROOT / "iot_playground").iterdir() if p.is_dir() and p.name != "__pycache__"
    } == {
        "common",
        "clients",
        "local",
        "deploy",
        "migration",
    }


@pytest.mark.parametrize("path", sources()[1:], ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_go_down(path):
    here = folder_of(module_name(path))
    allowed = ALLOWED.get(here, set()) | {here}
    for module, _ in imports(path):
        if module.split(".")[0] in ("app", "benchmarks", "tests"):
            raise AssertionError(f"{path.name} imports {module}: nothing installed imports those")
        if module == "iot_playground":
            continue  # the package itself (its docstring), not a folder
        target = folder_of(module)
        assert target in allowed, (
            f"{module_name(path)} imports {module}: {here} may use only {sorted(allowed)}"
        )


@pytest.mark.parametrize("path", sources()[1:], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_folder_takes_another_folders_private_names(path):
    here = folder_of(module_name(path))
    for module, names in imports(path):
        if module == "iot_playground" or module.split(".")[0] not in ("chalicelib", "iot_playground"):
            continue
        if folder_of(module) != here:
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{module_name(path)} takes {private} from {module}: make them public there"


def test_the_api_imports_no_tool():
    for module, _ in imports(ROOT / "app.py"):
        assert module.split(".")[0] == "chalicelib", f"app.py imports {module}"


def test_no_two_modules_share_a_name_across_packages():
    """`grafana` was once both a top-level package and `chalicelib/grafana.py`."""
    packages = {p.parent for p in ROOT.glob("*/__init__.py")}
    top_level = {p.name for p in packages} | {p.stem for p in ROOT.glob("*.py")}
    modules = {p.stem for p in (ROOT / "chalicelib").glob("*.py")}
    assert not top_level & modules - {"__init__"}


def test_the_migration_only_code_is_not_in_the_lambda_package():
    lambda_source = "\n".join(p.read_text() for p in [ROOT / "app.py", *(ROOT / "chalicelib").rglob("*.py")])
    for name in (
        "put_imported",
        "ImportedReading",
        "IMPORTED_KEY_PREFIX",
        "batch_get_item",
        "_existing_keys",
    ):
        assert name not in lambda_source, f"{name} is migration-only: it belongs in iot_playground/migration/"
