"""The Lambda roles grant exactly the DynamoDB and S3 actions the deployed code calls.

The calls are read from the source (app.py and chalicelib/, what the Lambda
package holds) with `ast`: every `<...>client.<operation>(` call, mapped to its
IAM action through botocore's DynamoDB model. Each call is attributed to a table
through the repository class it sits in and the settings attribute parts.py
builds that class with; a call that cannot be attributed must be granted on
every table. S3 calls (on a client named `s3`, or `s3_client()`) are read the same
way through botocore's S3 model, a presigned URL as the action it signs.

The API handler's policy (shared with the sweep) covers every call in the code;
`ingest_device_messages` has its own, covering the calls of what it can reach:
every function or method whose name the reachable code calls or passes on (by
name, so more rather than less). Its SQS actions are Lambda's poller's.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from iot_playground.cli import main
from iot_playground.common.stages import CHALICE_DIR, DEPLOY_STAGES, Stage
from iot_playground.deploy import resources as described

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
# The tables the app's own code reads and writes; Powertools' Idempotency alone uses the third.
TABLES = described.tables("dev", {})
CODE_TABLES = [t["key"] for t in TABLES if t["key"] != "idempotency"]
POWERTOOLS_IDEMPOTENCY_ACTIONS = {
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
}


@functools.cache
def _operation_names(service: str = "dynamodb") -> dict[str, str]:
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


def _is_s3(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "s3" or node.id == "s3_client"
    if isinstance(node, ast.Call):
        return _is_s3(node.func)
    return False


def s3_calls(source: str) -> set[str]:
    """IAM actions (`s3:...`) the source calls or signs URLs for."""
    operations = _operation_names("s3")
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


def _transaction_actions(tree: ast.AST) -> set[str]:
    keys = {
        key.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for key in node.keys
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    }
    return {action for key, action in _TRANSACT_ITEM_ACTIONS.items() if key in keys}


def dynamodb_calls(source: str, transactions: ast.AST | None = None) -> dict[str | None, set[str]]:
    """IAM action names (without `dynamodb:`) the source calls, per enclosing class; a transaction's
    items are those `transactions` builds (default: the whole source)."""
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
                        calls[owner] |= _transaction_actions(transactions or tree)
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
    table_attributes = {t["setting"].lower(): t["key"] for t in TABLES}
    owners: dict[str, str] = {}
    for path in LAMBDA_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            for argument in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(argument, ast.Attribute) and argument.attr in table_attributes:
                    owners[node.func.id] = table_attributes[argument.attr]
    return owners


def _by_table(calls: list[tuple[str | None, set[str]]]) -> dict[str, set[str]]:
    """(class, actions) pairs as IAM actions per table (every table's for an unattributed call)."""
    owners = repository_tables()
    used: dict[str, set[str]] = defaultdict(set)
    for owner, actions in calls:
        table = owners.get(owner or "", ALL_TABLES_KEY)
        for target in CODE_TABLES if table == ALL_TABLES_KEY else [table]:
            used[target] |= {f"dynamodb:{action}" for action in actions}
    return dict(used)


def actions_by_table() -> dict[str, set[str]]:
    return _by_table([call for path in LAMBDA_SOURCES for call in dynamodb_calls(path.read_text()).items()])


Definition = tuple[str | None, ast.FunctionDef]  # its class (None: a function), its node


def definitions() -> dict[str, list[Definition]]:
    """Every function and method of the Lambda sources, by name."""
    found: dict[str, list[Definition]] = defaultdict(list)

    def visit(node: ast.AST, owner: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef):
                found[child.name].append((owner, child))
            visit(child, child.name if isinstance(child, ast.ClassDef) else owner)

    for path in LAMBDA_SOURCES:
        visit(ast.parse(path.read_text()), None)
    return found


def _called(node: ast.AST) -> set[str]:
    """The names `node` calls, or passes on as arguments (a handler, a callback)."""
    names = set()
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        for target in [call.func, *call.args, *(k.value for k in call.keywords)]:
            names |= {target.id} if isinstance(target, ast.Name) else set()
            names |= {target.attr} if isinstance(target, ast.Attribute) else set()
    return names


def reachable(root: str) -> list[Definition]:
    everything, found, todo = definitions(), list[Definition](), list(definitions()[root])
    while todo:
        owner, node = todo.pop()
        if all(node is not seen for _, seen in found):
            found.append((owner, node))
            todo += [d for name in _called(node) for d in everything.get(name, [])]
    return found


def actions_reachable_from(root: str) -> dict[str, set[str]]:
    """IAM actions per table of what the function `root` of app.py can reach."""
    found, calls = reachable(root), []
    for owner, node in found:
        siblings = ast.Module(body=[n for o, n in found if o == owner], type_ignores=[])
        calls += [(owner, actions) for actions in dynamodb_calls(ast.unparse(node), siblings).values()]
    return _by_table(calls)


def granted_by_table(policy: dict[str, object], stage: Stage) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = defaultdict(set)
    for statement in policy["Statement"]:  # type: ignore[attr-defined]
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        for table in described.tables(stage.name, stage.environment):
            table_arn = f"arn:aws:dynamodb:*:*:table/{table['name']}"
            if any(r == table_arn or r.startswith(f"{table_arn}/index/") for r in resources):
                granted[table["key"]] |= {a for a in statement["Action"] if a.startswith("dynamodb:")}
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
    assert used == set(described.S3_ACTIONS) == {"s3:GetObject", "s3:PutObject"}
    for stage_name in DEPLOY_STAGES:
        stage = Stage.load(stage_name)
        policy = json.loads(stage.policy_file.read_text())
        s3_statements = [s for s in policy["Statement"] if any(a.startswith("s3:") for a in s["Action"])]
        assert s3_statements == [
            {
                "Sid": "ReportObjects",
                "Effect": "Allow",
                "Action": list(described.S3_ACTIONS),
                "Resource": [f"arn:aws:s3:::{stage.app_settings.reports_bucket}/*"],
            }
        ]
        assert stage.app_settings.reports_bucket == f"iot-playground-reports-{stage_name}"


def test_the_code_is_attributed_to_its_tables():
    used = actions_by_table()
    assert set(used) == set(CODE_TABLES)
    # The run limit lives in transactions: without UpdateItem no run could start or end.
    assert "dynamodb:UpdateItem" in used["runs"]


def test_the_policy_source_matches_the_code():
    used = actions_by_table()
    declared = {table: set(actions) for table, actions in described.DYNAMODB_ACTIONS.items()}
    assert declared.pop("idempotency") == POWERTOOLS_IDEMPOTENCY_ACTIONS
    assert declared == used, "resources.py DYNAMODB_ACTIONS must list exactly what the code calls"


def policies(stage: Stage) -> dict[str, tuple[list[str], dict[str, Any]]]:
    """Each policy file of the stage: its functions and its policy, checked against `make policies`."""
    d, found = described.describe(stage), {}
    for file, functions in d["policies"].items():
        policy = json.loads(stage.policy_file.with_name(file).read_text())
        assert policy == described.resolve(described.policy(d, file), described.arn_refs(d)), "make policies"
        found[file] = (functions, policy)
    return found


def test_the_reachability_analysis_follows_calls_and_handlers():
    ingest = {f"{owner}.{node.name}" for owner, node in reachable(described.INGEST)}
    assert {"RunService.require_running", "RunRepository.end", "ReadingRepository.write"} <= ingest
    assert {"RunRepository.start", "RunRepository.page", "ReadingRepository.page"}.isdisjoint(ingest)
    assert "None.one" in ingest  # Powertools' record handler, passed on, not called here


@pytest.mark.slow
@pytest.mark.parametrize("stage_name", DEPLOY_STAGES)
def test_each_stage_policy_file_grants_exactly_the_calls(stage_name):
    stage = Stage.load(stage_name)
    found = policies(stage)
    functions, policy = found.pop(stage.policy_file.name)
    assert set(functions) == {"api_handler", "time_out_orphaned_runs"}
    granted = granted_by_table(policy, stage)
    assert granted.pop("idempotency") == POWERTOOLS_IDEMPOTENCY_ACTIONS
    assert granted == actions_by_table()
    # The SQS function's own: only what it can reach, exactly; the queue's reading, on its queue only.
    ((functions, policy),) = found.values()
    assert functions == [described.INGEST]
    used = actions_reachable_from(described.INGEST)
    assert (
        granted_by_table(policy, stage)
        == used
        == {table: set(actions) for table, actions in described.INGEST_ACTIONS.items()}
    )
    assert used["runs"].isdisjoint({"dynamodb:PutItem", "dynamodb:Query"})  # it neither starts nor lists
    queue = f"arn:aws:sqs:*:*:{stage.app_name}-{stage.name}-device-messages"
    (reads,) = [s for s in policy["Statement"] if any(a.startswith("sqs:") for a in s["Action"])]
    assert (reads["Action"], reads["Resource"]) == (described.SQS_ACTIONS, [queue])
    assert not any(a.startswith("s3:") for s in policy["Statement"] for a in s["Action"])
    api_actions = {a for s in json.loads(stage.policy_file.read_text())["Statement"] for a in s["Action"]}
    assert not any(a.startswith("sqs:") for a in api_actions)


def test_lambdas_poller_is_all_that_reads_the_queue():
    """Powertools' batch processor reports failures in the answer and calls no SQS API (no
    ChangeMessageVisibility): the function's role needs only what Lambda's poller calls."""
    import aws_lambda_powertools.utilities.batch as batch

    sources = [p.read_text() for p in Path(batch.__file__).parent.rglob("*.py")]
    assert not any(re.search(r"boto3|botocore|\.client\(", text) for text in sources)
    assert described.SQS_ACTIONS == ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]


@pytest.mark.parametrize("stage_name", DEPLOY_STAGES)
def test_no_data_action_is_granted_on_all_resources(stage_name):
    stage = Stage.load(stage_name)
    for functions, policy in policies(stage).values():
        names = [stage.function_names()[f] for f in functions]
        function_groups = {f"arn:aws:logs:*:*:log-group:/aws/lambda/{name}:*" for name in names}
        actions = set()
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            actions |= set(statement["Action"])
            resources = statement["Resource"]
            if resources == "*":
                assert set(statement["Action"]) <= set(described.XRAY_ACTIONS), statement
            else:
                assert all("*:table/*" not in r and r != "*" for r in resources), statement
            if any(a.startswith("logs:") for a in statement["Action"]):
                assert set(resources) == function_groups  # each role writes its own functions' logs only
        assert any(a.startswith("xray:") for a in actions) is stage.xray
        assert not any(a.endswith(":*") or a == "*" for a in actions)


@pytest.mark.parametrize("stage_name", DEPLOY_STAGES)
def test_stage_uses_its_policy_file(stage_name):
    config = json.loads((CHALICE_DIR / "config.json").read_text())
    stage_config = config["stages"][stage_name]
    assert stage_config["autogen_policy"] is False
    assert stage_config["iam_policy_file"] == f"policy-{stage_name}.json"
    ingest = stage_config["lambda_functions"][described.INGEST]
    assert ingest["iam_policy_file"] == f"policy-ingest-{stage_name}.json"
    assert config["stages"]["local"].get("autogen_policy") is None  # `local` stays as it was


def test_policy_check_reports_drift(tmp_path, monkeypatch):
    stage = Stage.load("dev")
    prod = Stage.load("prod").policy_file.read_text()
    copy = tmp_path / stage.policy_file.name
    copy.write_text(stage.policy_file.read_text().replace("dynamodb:Query", "dynamodb:Scan"))
    monkeypatch.setattr(Stage, "policy_file", property(lambda self: tmp_path / f"policy-{self.name}.json"))
    (tmp_path / "policy-prod.json").write_text(prod)
    runner = CliRunner()
    drifted = runner.invoke(main, ["policies", "--check"])
    assert drifted.exit_code == 1 and "policy-dev.json" in drifted.stderr
    assert runner.invoke(main, ["policies"]).exit_code == 0
    assert runner.invoke(main, ["policies", "--check"]).exit_code == 0
