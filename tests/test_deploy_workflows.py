"""The GitHub Actions workflows: actionlint-clean, and wired the way docs/operations.md says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy_support import ROOT, run_tool

WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name: str) -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    document["on"] = document.pop(True, document.get("on"))
    return document


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    (job,) = workflow["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def _index(steps: list[dict[str, Any]], needle: str) -> int:
    return next(i for i, step in enumerate(steps) if needle in str(step.get("run", "")))


def test_actionlint_accepts_every_workflow():
    assert {p.name for p in WORKFLOWS.glob("*.yml")} == {"ci.yml", "deploy.yml", "package.yml", "destroy.yml"}
    result = run_tool("actionlint", "-no-color", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_ci_script_on_push_and_pull_request():
    workflow = _load("ci.yml")
    assert set(workflow["on"]) == {"push", "pull_request"}
    assert [s["run"] for s in _steps(workflow) if "run" in s] == ["bash .ci/run"]


@pytest.mark.parametrize("name", ["deploy.yml", "destroy.yml"])
def test_deploys_assume_a_role_through_oidc(name):
    workflow = _load(name)
    assert set(workflow["on"]) == {"workflow_dispatch"}
    assert workflow["on"]["workflow_dispatch"]["inputs"]["stage"]["options"] == ["dev", "prod"]
    assert workflow["permissions"]["id-token"] == "write"
    (credentials,) = [s for s in _steps(workflow) if "configure-aws-credentials" in s.get("uses", "")]
    assert credentials["with"]["role-to-assume"].startswith("${{ vars.")
    assert "aws-access-key-id" not in credentials["with"]


def test_deploy_provisions_tables_before_chalice_deploy():
    steps = _steps(_load("deploy.yml"))
    assert _index(steps, "make tables") < _index(steps, "chalice deploy --stage")


def test_deploy_applies_the_guards_right_after_chalice_deploy():
    steps = _steps(_load("deploy.yml"))
    deploy, guards = _index(steps, "chalice deploy --stage"), _index(steps, "make guards")
    assert guards == deploy + 1
    assert steps[guards]["run"] == 'make guards STAGE="$STAGE"'
    assert "if" not in steps[guards]  # a failed guard fails the deployment


def test_destroy_requires_typed_confirmation_and_keeps_tables_by_default():
    workflow = _load("destroy.yml")
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert inputs["confirm"]["required"] is True
    assert inputs["delete_tables"]["default"] is False
    steps = _steps(workflow)
    assert _index(steps, '"$CONFIRM" != "destroy $STAGE"') < _index(steps, "chalice delete")
    (tables,) = [s for s in steps if "--delete" in str(s.get("run", ""))]
    assert tables["if"] == "inputs.delete_tables"


def test_package_builds_both_formats_for_both_stages():
    workflow = _load("package.yml")
    (job,) = workflow["jobs"].values()
    assert job["strategy"]["matrix"]["stage"] == ["dev", "prod"]
    runs = " ".join(str(s.get("run", "")) for s in job["steps"])
    assert "make package " in runs and "make package-tf " in runs
    uploads = [s["with"]["path"] for s in job["steps"] if "upload-artifact" in s.get("uses", "")]
    assert uploads == ["dist/${{ matrix.stage }}/", "dist/${{ matrix.stage }}-terraform/"]


def test_workflows_never_hold_aws_keys():
    for path in WORKFLOWS.glob("*.yml"):
        text = Path(path).read_text()
        assert "AWS_SECRET_ACCESS_KEY" not in text and "aws-secret-access-key" not in text, path.name
