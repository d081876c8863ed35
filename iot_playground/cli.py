"""`iot-playground`: the one command line of the project's tools (every `make` target calls it).

Each command is its options, its help and a call into the folder that does the work
(clients/, local/, deploy/, migration/); imports stay inside the commands, so `--help`
and each command load only what they use.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from iot_playground.clients.api_client import DEFAULT_API_URL
from iot_playground.common.stages import DEPLOY_STAGES

if TYPE_CHECKING:
    from rich.console import Console

# The frontend's rule for user names (the API itself accepts a wider set).
USER_RE = re.compile(r"^[A-Za-z0-9._-]{3,20}$")

api_option = click.option(
    "--api",
    "api_url",
    default=DEFAULT_API_URL,
    show_default=True,
    envvar="IOT_PLAYGROUND_API",
    help="Base URL of the API (env IOT_PLAYGROUND_API).",
)
batch_option = click.option(
    "--batch", is_flag=True, help="Send each round as one JSON array instead of one request per sensor."
)
interval_option = click.option(
    "--interval-ms",
    type=click.IntRange(0, 3_600_000),
    default=200,
    show_default=True,
    help="Pause between one round's answers and the next round (the frontend allows 200-10000).",
)
report_option = click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a JSON report here.",
)


def _console() -> Console:
    """Rich output on stdout; piped or captured, wide enough that run ids are not cut."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


def _user(_: click.Context, __: click.Parameter, value: str) -> str:
    if not USER_RE.match(value):
        raise click.BadParameter("3-20 characters of A-Z a-z 0-9 . _ -")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="iot-playground")
def main() -> None:
    """IoT Playground tools: serve the API locally, drive it, deploy it, migrate data into it."""


deploy_stage_option = click.option(
    "--stage",
    required=True,
    type=click.Choice(DEPLOY_STAGES),
    help="The deploy stage of .chalice/config.json.",
)
check_option = click.option("--check", is_flag=True, help="Write nothing; exit 1 if the file is out of date.")


# ---- local -----------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="HOST", help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, envvar="PORT", help="Port to listen on.")
@click.option("--stage", default="local", show_default=True, help="Stage of .chalice/config.json.")
@click.option("--no-autoreload", is_flag=True, help="Do not restart on code changes.")
def serve(host: str, port: int, stage: str, no_autoreload: bool) -> None:
    """Serve the API on HOST:PORT with an embedded DynamoDB and S3 endpoint (`make run`).

    Creates the tables and the reports bucket there and prints the admin API key
    (ADMIN_API_KEY, or a new one). DYNAMODB_ENDPOINT uses another endpoint instead
    (DynamoDB Local, an account); each setting of the stage can be overridden from
    the environment (MAX_CONCURRENT_RUNS=10 make run).
    """
    from iot_playground.local.local_stack import serve as serve_api

    sys.exit(serve_api(host, port, stage, autoreload=not no_autoreload))


# ---- deploy and operations ------------------------------------------------------------


@main.command()
@deploy_stage_option
@click.option("--dry-run", is_flag=True, help="Only say what would change.")
@click.option("--delete", is_flag=True, help="Delete the stage's tables and bucket, data and all.")
@click.option(
    "--endpoint-url",
    envvar="DYNAMODB_ENDPOINT",
    help="Another DynamoDB endpoint (default: the account's regional one; env DYNAMODB_ENDPOINT).",
)
@click.option(
    "--s3-endpoint-url",
    envvar="S3_ENDPOINT",
    help="Another S3 endpoint (default: the account's regional one; env S3_ENDPOINT).",
)
def tables(
    stage: str, dry_run: bool, delete: bool, endpoint_url: str | None, s3_endpoint_url: str | None
) -> None:
    """Create or update a stage's DynamoDB tables and reports bucket (`make tables`).

    Idempotent: each step looks first and changes only what differs. Readings of the
    old layout are moved to chunks before the indexes that served them are dropped.
    """
    from iot_playground.deploy.tables_admin import apply_stage

    if dry_run and delete:
        raise click.UsageError("--dry-run and --delete exclude each other")
    sys.exit(
        apply_stage(
            stage,
            dry_run=dry_run,
            delete=delete,
            endpoint_url=endpoint_url or None,
            s3_endpoint_url=s3_endpoint_url or None,
        )
    )


@main.command()
@deploy_stage_option
@click.option(
    "--format",
    "pkg_format",
    type=click.Choice(["cloudformation", "terraform"]),
    default="cloudformation",
    show_default=True,
    help="What to package for.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder [default: dist/<stage>, dist/<stage>-terraform].",
)
def package(stage: str, pkg_format: str, out: Path | None) -> None:
    """Package a stage: deployment.zip and its template (`make package`, `make package-tf`)."""
    from iot_playground.deploy.packaging import package as build

    sys.exit(build(stage, pkg_format, out))


@main.command()
@check_option
def policies(check: bool) -> None:
    """Write .chalice/policy-<stage>.json, the Lambda role, for every deploy stage (`make policies`)."""
    from iot_playground.deploy.iam import write_policies

    sys.exit(write_policies(check=check))


@main.command()
@check_option
def dashboard(check: bool) -> None:
    """Write grafana/dashboards/iot-serverless.json from the metrics, run links and stages."""
    from iot_playground.deploy.dashboard_builder import write_dashboard

    sys.exit(write_dashboard(check=check))


@main.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
def openapi(path: Path | None) -> None:
    """Write the OpenAPI document to docs/openapi.json, or PATH (`make openapi`)."""
    from chalicelib.openapi import DOCUMENT_FILE, document_text

    target = path or DOCUMENT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(document_text(), encoding="utf-8")
    click.echo(f"wrote {target}")


@main.command()
@click.option("--write", is_flag=True, help="Write the derived values into .chalice/config.json.")
@click.option("--check", is_flag=True, help="Exit 1 when .chalice/config.json differs from them.")
def capacity(write: bool, check: bool) -> None:
    """Derive each stage's throttle and reserved concurrency, and print the daily cost ceiling."""
    from iot_playground.deploy.capacity import reconcile_config

    if write and check:
        raise click.UsageError("--write and --check exclude each other")
    sys.exit(reconcile_config(write=write, check=check))


@main.command()
@deploy_stage_option
@click.option(
    "--deployed",
    type=click.Path(dir_okay=False, path_type=Path),
    help="chalice deploy's record [default: .chalice/deployed/<stage>.json].",
)
@click.option("--rest-api-id", help="The stage's REST API, when there is no record to read it from.")
@click.option(
    "--alarm-topic-arn",
    envvar="ALARM_TOPIC_ARN",
    help="SNS topic the alarms notify (env ALARM_TOPIC_ARN); none by default.",
)
@click.option("--dry-run", is_flag=True, help="Say what would change, change nothing.")
def guards(
    stage: str, deployed: Path | None, rest_api_id: str | None, alarm_topic_arn: str | None, dry_run: bool
) -> None:
    """Apply the stage's guardrails after `chalice deploy` (`make guards`).

    Throttle, admin usage plan and key, gateway responses, alarms and reserved
    concurrency; each step changes only what differs.
    """
    from botocore.exceptions import BotoCoreError

    from iot_playground.deploy.guards import GuardsError, run

    try:
        run(
            stage,
            deployed=deployed,
            rest_api_id=rest_api_id,
            alarm_topic_arn=alarm_topic_arn or None,
            dry_run=dry_run,
        )
    except (GuardsError, BotoCoreError) as error:  # e.g. no credentials or region in the environment
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


@main.command("checkov-view")
@click.argument("terraform_folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_folder", type=click.Path(file_okay=False, path_type=Path))
def checkov_view(terraform_folder: Path, out_folder: Path) -> None:
    """Merge `iot-playground package --format terraform`'s files as Terraform would, for checkov."""
    from iot_playground.deploy.checkov_view import write_view

    click.echo(str(write_view(terraform_folder, out_folder)))


# ---- clients ---------------------------------------------------------------------------


@main.command()
@api_option
@click.option("--user", default="simulator", show_default=True, callback=_user, help="Sent as X-User.")
@click.option(
    "--sensors", type=click.IntRange(1, 100), default=10, show_default=True, help="sensor-1..sensor-N"
)
@click.option("--count", type=click.IntRange(1), default=100, show_default=True, help="Readings per sensor.")
@interval_option
@batch_option
@report_option
def simulate(
    api_url: str, user: str, sensors: int, count: int, interval_ms: int, batch: bool, report_path: Path | None
) -> None:
    """Drive one run exactly as the frontend does, then print a summary.

    can-start, start, COUNT rounds of one reading per sensor (in parallel, or one
    batch request), finish. Ctrl-C finishes the run as FAILED. Exit code 0 when
    every reading was accepted, 1 otherwise, 130 when interrupted.

    Example: iot-playground simulate --user alice --sensors 10 --count 100 --interval-ms 200
    """
    from iot_playground.clients.run_driver import RunPlan
    from iot_playground.clients.simulate import run_simulation

    plan = RunPlan(user=user, sensors=sensors, count=count, interval_ms=interval_ms, batch=batch)
    sys.exit(run_simulation(api_url, plan, report_path=report_path, console=_console()))


@main.command()
@api_option
@click.option("--runs", type=click.IntRange(1, 1000), default=5, show_default=True, help="Runs to drive.")
@click.option(
    "--sensors", type=click.IntRange(1, 100), default=10, show_default=True, help="Sensors per run."
)
@click.option(
    "--data-points", type=click.IntRange(1), default=100, show_default=True, help="Readings per sensor."
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    help="Runs driven at the same time [default: all of them]. The server's run limit still applies: "
    "runs beyond it wait for a slot.",
)
@interval_option
@batch_option
@click.option("--user", default="loadtest", show_default=True, callback=_user, help="Sent as X-User.")
@click.option(
    "--slot-wait",
    type=click.FloatRange(0),
    default=600.0,
    show_default=True,
    help="Seconds a run may wait for a free slot before it counts as failed.",
)
@click.option(
    "--settle",
    type=click.FloatRange(0),
    default=5.0,
    show_default=True,
    help="Seconds to keep re-reading a run whose readings are not all visible yet.",
)
@report_option
def load(
    api_url: str,
    runs: int,
    sensors: int,
    data_points: int,
    concurrency: int | None,
    interval_ms: int,
    batch: bool,
    user: str,
    slot_wait: float,
    settle: float,
    report_path: Path | None,
) -> None:
    """Drive several runs at once, read every run back and account for every reading.

    Each reading carries a timestamp and value that name its round, so the check
    is exact: per run and sensor, readings sent vs stored, missing, duplicates and
    unexpected ones. Exit code 1 on any loss.

    Example: iot-playground load --runs 5 --sensors 10 --data-points 100 --report load.json
    """
    from iot_playground.clients.load import LoadPlan, run_load

    plan = LoadPlan(
        runs=runs,
        sensors=sensors,
        data_points=data_points,
        interval_ms=interval_ms,
        concurrency=concurrency or runs,
        batch=batch,
        user=user,
        slot_wait_s=slot_wait,
        settle_s=settle,
    )
    sys.exit(run_load(api_url, plan, report_path=report_path, console=_console()))


@main.command("interrupt-all")
@api_option
@click.option(
    "--admin-key",
    envvar="ADMIN_API_KEY",
    required=True,
    help="The stage's admin API key, sent as x-api-key (env ADMIN_API_KEY). `make run` prints it; "
    "for a deployed stage: aws apigateway get-api-key --api-key <id> --include-value.",
)
def interrupt_all(api_url: str, admin_key: str) -> None:
    """Interrupt every RUNNING run (POST /api/runs/interrupt-all, which needs the admin key).

    Exit code 0 when the API accepted it, 1 otherwise (403 without the right key).

    Example: ADMIN_API_KEY=... iot-playground interrupt-all --api https://api-dev.iot-playground.example.com
    """
    import asyncio

    from iot_playground.clients.api_client import PlaygroundApi, RequestFailed

    async def send() -> dict[str, object]:
        async with PlaygroundApi(api_url) as api:
            return await api.interrupt_all(admin_key=admin_key)

    try:
        answer = asyncio.run(send())
    except RequestFailed as error:
        click.echo(error.message, err=True)
        sys.exit(1)
    click.echo(str(answer.get("message") or answer))


# ---- migration -------------------------------------------------------------------------


@main.command()
@click.option(
    "--postgres",
    "postgres_url",
    required=True,
    envvar="OLD_BACKEND_POSTGRES_URL",
    help="The old backend's database, e.g. postgresql://user:pass@host:5432/iot "
    "(env OLD_BACKEND_POSTGRES_URL).",
)
@click.option("--dry-run", is_flag=True, help="Read and compare, write nothing (not even the checkpoint).")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Only runs started and readings taken at or after this UTC time.",
)
@click.option(
    "--stage",
    help="Take RUNS_TABLE/READINGS_TABLE from this stage of .chalice/config.json "
    "(default: the environment, as the app does).",
)
@click.option(
    "--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True, help="Rows per batch."
)
@click.option(
    "--from-start",
    is_flag=True,
    help="Ignore the checkpoint and re-read every row (rows already there are still not written twice).",
)
def migrate(
    postgres_url: str,
    dry_run: bool,
    since: datetime | None,
    stage: str | None,
    batch_size: int,
    from_start: bool,
) -> None:
    """Copy runs and readings from the old backend's PostgreSQL into the app's DynamoDB tables.

    Same run ids; CANCELED becomes INTERRUPTED, COMPLETED becomes SUCCESS. Idempotent
    (a second pass writes nothing) and resumable (a checkpoint per table, kept in the
    runs table, says where to go on after an interruption). The target is the
    app's: RUNS_TABLE, READINGS_TABLE, DYNAMODB_ENDPOINT, or --stage.

    Example: iot-playground migrate --postgres postgresql://iot@localhost/iot --dry-run
    """
    from iot_playground.migration.migrate import MigrationOptions, run_migrate_command

    options = MigrationOptions(
        postgres_url=postgres_url,
        dry_run=dry_run,
        since=since,
        batch_size=batch_size,
        from_start=from_start,
    )
    sys.exit(run_migrate_command(options, stage=stage, console=_console()))


@main.command("migrate-readings-layout")
@click.option("--stage", default=None, help="Use this stage's table names from .chalice/config.json.")
def migrate_readings_layout(stage: str | None) -> None:
    """Rewrite readings of the old one-item-per-reading layout as chunks (issue 10).

    Each chunk is written with the deletion of its old items in one transaction:
    resumable after any interruption, and a second run changes nothing. Needs
    operator credentials (Scan, TransactWriteItems with deletes). The target is the
    app's: READINGS_TABLE and DYNAMODB_ENDPOINT, or --stage.
    """
    from iot_playground.migration.migrate import target_client, target_settings
    from iot_playground.migration.readings_layout import migrate_layout

    settings = target_settings(stage)
    summary = migrate_layout(target_client(settings), settings.readings_table)
    click.echo(
        f"{settings.readings_table}: {summary.readings} readings of {summary.partitions} old partitions"
        f" rewritten as {summary.chunks} chunks"
        + ("" if summary.readings else " (nothing of the old layout left)")
    )
