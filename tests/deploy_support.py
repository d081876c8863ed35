"""The dev stage packaged once per test session, both formats, with no AWS credentials."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = ROOT / ".venv-tools" / "bin"
STAGE = "dev"
_NO_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@dataclass(frozen=True)
class Packaged:
    cloudformation: Path
    terraform: Path
    seconds: float

    def template(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.cloudformation / "sam.json").read_text())
        return document

    def tf(self, name: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.terraform / name).read_text())
        return document


@cache
def package_dev() -> Packaged:
    from iot_playground.deploy.packaging import package_cloudformation, package_terraform

    out = Path(tempfile.mkdtemp(prefix="iot-playground-package-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    saved = dict(os.environ)
    for name in (*_NO_CREDENTIALS, "AWS_DEFAULT_REGION", "AWS_REGION"):
        os.environ.pop(name, None)
    # No credentials and no region anywhere: packaging must not need an account.
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.environ["AWS_CONFIG_FILE"] = str(out / "no-such-file")
    started = time.perf_counter()
    try:
        package_cloudformation(STAGE, out / "cloudformation")
        package_terraform(STAGE, out / "terraform")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return Packaged(out / "cloudformation", out / "terraform", time.perf_counter() - started)


def tool(name: str) -> Path:
    """A checker from .venv-tools (`make tools`); `make test` and CI always have them."""
    path = TOOLS_BIN / name
    if not path.exists():
        message = f"{path.relative_to(ROOT)} missing: run `make tools`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_tool(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool(name)), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def on_demand_throughput(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """moto 5 keeps no OnDemandThroughput: remember what CreateTable and UpdateTable set (table and
    indexes) and answer it in DescribeTable, as DynamoDB does. Yields what was set, by table."""
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    kept: dict[str, Any] = {}

    def keeping(name: str) -> None:
        original = getattr(DynamoHandler, name)

        def call(self: Any) -> Any:
            body, table = self.body, self.body["TableName"]
            indexes = [i for i in body.get("GlobalSecondaryIndexes", [])]
            indexes += [u["Update"] for u in body.get("GlobalSecondaryIndexUpdates", []) if "Update" in u]
            for source in [body, *indexes]:
                if "OnDemandThroughput" in source:
                    kept[f"{table}/{source.get('IndexName', '')}"] = source["OnDemandThroughput"]
            return original(self)

        monkeypatch.setattr(DynamoHandler, name, call)

    keeping("create_table")
    keeping("update_table")
    describe = Table.describe

    def described(self: Any, base_key: str = "TableDescription") -> dict[str, Any]:
        result: dict[str, Any] = describe(self, base_key)
        table = result[base_key]
        for target, index in [(table, ""), *((i, i["IndexName"]) for i in table["GlobalSecondaryIndexes"])]:
            if f"{self.name}/{index}" in kept:
                target["OnDemandThroughput"] = kept[f"{self.name}/{index}"]
        return result

    monkeypatch.setattr(Table, "describe", described)
    return kept
