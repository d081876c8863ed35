"""The Lambda role grants exactly the DynamoDB and S3 actions the deployed code calls.

The calls are read from the source (app.py and chalicelib/, what the Lambda
package holds) with `ast`: every `<...>client.<operation>(` call, mapped to its
IAM action through botocore's DynamoDB model. Each call is attributed to a table
through the repository class it sits in and the settings attribute deps.py
builds that class with; a call that cannot be attributed must be granted on
every table. S3 calls (on a client named `s3`, or `s3_client()`) are read the same
way through botocore's S3 model, a presigned URL as the action it signs.
"""

from __future__ import annotations

import ast
import json
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from chalicelib.tables import ALL_TABLES
from iot_playground.cli import main
from iot_playground.common.stages import CHALICE_DIR, DEPLOY_STAGES, Stage
from iot_playground.deploy import iam

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_SOURCES = [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]
# Client methods that are not API calls.
_CLIENT_HELPERS = {"get_waiter", "can_paginate", "close", "generate_presigned_url"}
# Inside TransactWriteItems each item is authorized as its own action.
_TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
ALL_TABLES_KEY = "*"


def _operation_names() -> dict[str, str]:
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model("dynamodb")
    return {xform_name(name): name for name in model.operation_names}


def _s3_operation_names() -> dict[str, str]:
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model("s3")
    return {xform_name(name): name for name in model.operation_names}


def _is_s3(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "s3" or node.id == "s3_client"
    if isinstance(node, ast.Call):
        return _is_s3(node.func)
    return False


def s3_calls(source: str) -> set[str]:
    """IAM actions (`s3:...`) the source calls or signs URLs for."""
    operations = _s3_operation_names()
    actions = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_s3(node.func.value):
            method = node.func.attr
            if method == "generate_presigned_url":
                assert node.args and isinstance(node.args[0], ast.Constant), "sign a literal operation"
                method = str(node.args[0].value)
            if method not in operations:
                raise AssertionError(f"{method}() is not an S3 operation: extend the policy source")
            actions.add(f"s3:{operations[method]}")
    return actions


def _is_client(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id.endswith("client")
    if isinstance(node, ast.Attribute):
        return node.attr.endswith("client")
    if isinstance(node, ast.Call):
        return _is_client(node.func)
    return False


def _transaction_actions(tree: ast.Module) -> set[str]:
    keys = {
        key.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for key in node.keys
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    }
    return {action for key, action in _TRANSACT_ITEM_ACTIONS.items() if key in keys}


def dynamodb_calls(source: str) -> dict[str | None, set[str]]:
    """IAM action names (without `dynamodb:`) the source calls, per enclosing class."""
    operations = _operation_names()
    tree = ast.parse(source)
    calls: dict[str | None, set[str]] = defaultdict(set)

    def visit(node: ast.AST, owner: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, child.name)
                continue
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and _is_client(child.func.value)
            ):
                method = child.func.attr
                if method == "get_paginator" and child.args and isinstance(child.args[0], ast.Constant):
                    method = str(child.args[0].value)
                if method not in _CLIENT_HELPERS and method != "get_paginator":
                    if method not in operations:
                        raise AssertionError(
                            f"{method}() is not a DynamoDB operation: extend the policy source"
                        )
                    if method == "transact_write_items":
                        calls[owner] |= _transaction_actions(tree)
                    elif method == "transact_get_items":
                        calls[owner].add("GetItem")
                    else:
                        calls[owner].add(operations[method])
            visit(child, owner)

    visit(tree, None)
    return calls


def repository_tables() -> dict[str, str]:
    """Class name -> table logical name, from constructor calls such as
    `RunRepository(dynamodb_client(), settings.runs_table, ...)`."""
    table_attributes = {
        f"{definition.logical_name}_table": definition.logical_name for definition in ALL_TABLES
    }
    owners: dict[str, str] = {}
    for path in LAMBDA_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            for argument in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(argument, ast.Attribute) and argument.attr in table_attributes:
                    owners[node.func.id] = table_attributes[argument.attr]
    return owners


def actions_by_table() -> dict[str, set[str]]:
    owners = repository_tables()
    used: dict[str, set[str]] = defaultdict(set)
    for path in LAMBDA_SOURCES:
        for owner, actions in dynamodb_calls(path.read_text()).items():
            table = owners.get(owner or "", ALL_TABLES_KEY)
            targets = [d.logical_name for d in ALL_TABLES] if table == ALL_TABLES_KEY else [table]
            for target in targets:
                used[target] |= {f"dynamodb:{action}" for action in actions}
    return dict(used)


def granted_by_table(policy: dict[str, object], stage: Stage) -> dict[str, set[str]]:
    settings = stage.app_settings
    granted: dict[str, set[str]] = defaultdict(set)
    for statement in policy["Statement"]:  # type: ignore[attr-defined]
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        for definition in ALL_TABLES:
            table_arn = f"arn:aws:dynamodb:*:*:table/{definition.table_name(settings)}"
            if any(r == table_arn or r.startswith(f"{table_arn}/index/") for r in resources):
                granted[definition.logical_name] |= {
                    a for a in statement["Action"] if a.startswith("dynamodb:")
                }
    return dict(granted)


def test_the_analysis_sees_calls_and_transactions():
    source = """
class Thing:
    def go(self):
        self._client.delete_item(TableName="t", Key={})
        self._client.transact_write_items(TransactItems=[{"ConditionCheck": {}}, {"Put": {}}])
def free(client):
    client.get_paginator("scan").paginate(TableName="t")
    dynamodb_client().batch_get_item(RequestItems={})
    client.get_waiter("table_exists")
"""
    assert dynamodb_calls(source) == {
        "Thing": {"DeleteItem", "ConditionCheckItem", "PutItem"},
        None: {"Scan", "BatchGetItem"},
    }
    with pytest.raises(AssertionError, match="not a DynamoDB operation"):
        dynamodb_calls("client.publish(TopicArn='x')")


def test_the_s3_analysis_sees_calls_and_signed_urls():
    source = """
s3 = s3_client()
s3.put_object(Bucket="b", Key="k", Body=b"")
s3_client().generate_presigned_url("get_object", Params={})
"""
    assert s3_calls(source) == {"s3:PutObject", "s3:GetObject"}
    assert dynamodb_calls(source) == {}  # not mistaken for DynamoDB calls
    with pytest.raises(AssertionError, match="not an S3 operation"):
        s3_calls("s3.publish(TopicArn='x')")


def test_the_policy_grants_exactly_the_s3_calls_on_the_reports_bucket_objects_only():
    used = set().union(*(s3_calls(path.read_text()) for path in LAMBDA_SOURCES))
    assert used == set(iam.S3_ACTIONS) == {"s3:GetObject", "s3:PutObject"}
    for stage_name in DEPLOY_STAGES:
        stage = Stage.load(stage_name)
        policy = json.loads(stage.policy_file.read_text())
        s3_statements = [s for s in policy["Statement"] if any(a.startswith("s3:") for a in s["Action"])]
        assert s3_statements == [
            {
                "Sid": "ReportObjects",
                "Effect": "Allow",
                "Action": list(iam.S3_ACTIONS),
                "Resource": [f"arn:aws:s3:::{stage.app_settings.reports_bucket}/*"],
            }
        ]
        assert stage.app_settings.reports_bucket == f"iot-playground-reports-{stage_name}"


def test_the_code_is_attributed_to_both_tables():
    used = actions_by_table()
    assert set(used) == {d.logical_name for d in ALL_TABLES}
    # The run limit lives in transactions: without UpdateItem no run could start or end.
    assert "dynamodb:UpdateItem" in used["runs"]


def test_the_policy_source_matches_the_code():
    used = actions_by_table()
    declared = {table: set(actions) for table, actions in iam.DYNAMODB_ACTIONS.items()}
    assert declared == used, (
        "iot_playground/deploy/iam.py DYNAMODB_ACTIONS must list exactly what the code calls"
    )


@pytest.mark.parametrize("stage_name", DEPLOY_STAGES)
def test_each_stage_policy_file_grants_exactly_the_calls(stage_name):
    stage = Stage.load(stage_name)
    policy = json.loads(stage.policy_file.read_text())
    assert policy == iam.deploy_policy(stage), "stale policy file: run `make policies`"
    assert granted_by_table(policy, stage) == actions_by_table()


@pytest.mark.parametrize("stage_name", DEPLOY_STAGES)
def test_no_data_action_is_granted_on_all_resources(stage_name):
    stage = Stage.load(stage_name)
    policy = json.loads(stage.policy_file.read_text())
    function_groups = {
        f"arn:aws:logs:*:*:log-group:/aws/lambda/{name}:*" for name in stage.function_names().values()
    }
    actions = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions |= set(statement["Action"])
        resources = statement["Resource"]
        if resources == "*":
            assert set(statement["Action"]) <= set(iam.XRAY_ACTIONS), statement
        else:
            assert all("*:table/*" not in r and r != "*" for r in resources), statement
        if any(a.startswith("logs:") for a in statement["Action"]):
            assert set(resources) == function_groups
    assert any(a.startswith("xray:") for a in actions) is stage.xray
    assert not any(a.endswith(":*") or a == "*" for a in actions)


@pytest.mark.parametrize("stage_name", DEPLOY_STAGES)
def test_stage_uses_its_policy_file(stage_name):
    config = json.loads((CHALICE_DIR / "config.json").read_text())
    stage_config = config["stages"][stage_name]
    assert stage_config["autogen_policy"] is False
    assert stage_config["iam_policy_file"] == f"policy-{stage_name}.json"
    assert config["stages"]["local"].get("autogen_policy") is None  # `local` stays as it was


def test_policy_check_reports_drift(tmp_path, monkeypatch):
    stage = Stage.load("dev")
    copy = tmp_path / stage.policy_file.name
    copy.write_text(stage.policy_file.read_text().replace("dynamodb:Query", "dynamodb:Scan"))
    monkeypatch.setattr(Stage, "policy_file", property(lambda self: tmp_path / f"policy-{self.name}.json"))
    (tmp_path / "policy-prod.json").write_text(iam.render(iam.deploy_policy(Stage.load("prod"))))
    runner = CliRunner()
    drifted = runner.invoke(main, ["policies", "--check"])
    assert drifted.exit_code == 1 and "policy-dev.json" in drifted.stderr
    assert runner.invoke(main, ["policies"]).exit_code == 0
    assert runner.invoke(main, ["policies", "--check"]).exit_code == 0
