"""The Lambda role's permissions: the one source every stage's policy is generated from.

`chalice deploy` reads `.chalice/policy-<stage>.json` (written by `make policies`,
`iot-playground policies`); the packaged templates use the same statements with the
tables, the reports bucket and the log groups referenced by the template's own
resources. tests/test_policy.py checks the DynamoDB and S3 actions below against
the calls the app's code makes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from chalicelib.tables import ALL_TABLES, TableDefinition
from iot_playground.common.stages import DEPLOY_STAGES, Stage
from iot_playground.deploy.reports_bucket import bucket_arn

# Per table (TableDefinition.logical_name): the DynamoDB IAM actions the app needs.
# Transactions need no action of their own: each Put/Update inside one is
# authorized as PutItem/UpdateItem.
DYNAMODB_ACTIONS: dict[str, tuple[str, ...]] = {
    "runs": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"),
    "readings": ("dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:Query"),
}
# Actions that also read indexes, so they are granted on `<table>/index/*` too.
INDEX_ACTIONS = frozenset({"dynamodb:Query", "dynamodb:Scan"})
# On the reports bucket's objects only (not the bucket): put a large download, and sign the
# GET URL that hands it out (a presigned URL acts with its signer's permissions).
S3_ACTIONS = ("s3:GetObject", "s3:PutObject")
LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")
# X-Ray has no resource-level permissions: these two only ever take "*".
XRAY_ACTIONS = ("xray:PutTelemetryRecords", "xray:PutTraceSegments")

Reference = Any  # an ARN string, or a template expression that evaluates to one


class Resources:
    """How one output format names the ARNs a policy grants on."""

    def __init__(
        self,
        table: Callable[[TableDefinition], Reference],
        index: Callable[[TableDefinition], Reference],
        log_groups: Callable[[], list[Reference]],
        report_objects: Callable[[], Reference],
    ):
        self.table = table
        self.index = index
        self.log_groups = log_groups
        self.report_objects = report_objects


def _statement_id(text: str) -> str:
    return "".join(part.capitalize() for part in text.replace("-", "_").split("_"))


def policy_document(stage: Stage, resources: Resources) -> dict[str, Any]:
    statements: list[dict[str, Any]] = []
    for definition in ALL_TABLES:
        actions = DYNAMODB_ACTIONS[definition.logical_name]
        item_actions = [a for a in actions if a not in INDEX_ACTIONS]
        index_actions = [a for a in actions if a in INDEX_ACTIONS]
        name = _statement_id(definition.logical_name)
        if item_actions:
            statements.append(
                {
                    "Sid": f"{name}TableItems",
                    "Effect": "Allow",
                    "Action": item_actions,
                    "Resource": [resources.table(definition)],
                }
            )
        if index_actions:
            targets = [resources.table(definition)]
            if definition.indexes:
                targets.append(resources.index(definition))
            statements.append(
                {
                    "Sid": f"{name}TableQueries",
                    "Effect": "Allow",
                    "Action": index_actions,
                    "Resource": targets,
                }
            )
    statements.append(
        {
            "Sid": "ReportObjects",
            "Effect": "Allow",
            "Action": list(S3_ACTIONS),
            "Resource": [resources.report_objects()],
        }
    )
    statements.append(
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": list(LOG_ACTIONS),
            "Resource": resources.log_groups(),
        }
    )
    if stage.xray:
        statements.append(
            {"Sid": "WriteTraces", "Effect": "Allow", "Action": list(XRAY_ACTIONS), "Resource": "*"}
        )
    return {"Version": "2012-10-17", "Statement": statements}


def arn_resources(stage: Stage) -> Resources:
    """Plain ARNs for `chalice deploy`. Region and account stay wildcards (the
    deploying account decides them); the stage-suffixed names pin the tables."""
    settings = stage.app_settings

    def table(definition: TableDefinition) -> str:
        return f"arn:aws:dynamodb:*:*:table/{definition.table_name(settings)}"

    def log_groups() -> list[Reference]:
        names = stage.function_names().values()
        return [f"arn:aws:logs:*:*:log-group:/aws/lambda/{name}:*" for name in sorted(names)]

    def report_objects() -> str:
        return f"{bucket_arn(settings.reports_bucket)}/*"

    return Resources(table, lambda definition: f"{table(definition)}/index/*", log_groups, report_objects)


def deploy_policy(stage: Stage) -> dict[str, Any]:
    return policy_document(stage, arn_resources(stage))


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def write_policies(*, check: bool = False) -> int:
    """`iot-playground policies`: write .chalice/policy-<stage>.json for every deploy stage
    (with check: write nothing, exit 1 when one differs)."""
    stale = []
    for name in DEPLOY_STAGES:
        stage = Stage.load(name)
        text = render(deploy_policy(stage))
        path = stage.policy_file
        if path.exists() and path.read_text() == text:
            continue
        if check:
            stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(path.parent.parent)}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run `make policies`)", file=sys.stderr)
        return 1
    return 0
