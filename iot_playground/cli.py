"""`iot-playground`: the project's tools on one command line (every `make` target calls it). Each
command is its options, its help and a call; imports stay inside, so each loads only what it uses."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from iot_playground.common.stages import DEPLOY_STAGES

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")

stage_option = click.option("--stage", required=True, type=click.Choice(DEPLOY_STAGES), help="Deploy stage.")
check_option = click.option("--check", is_flag=True, help="Write nothing; exit 1 if the file is out of date.")
dry_run_option = click.option("--dry-run", is_flag=True, help="Only say what would change.")
api_option = click.option(
    "--api", default="http://127.0.0.1:8000", envvar="IOT_PLAYGROUND_API", show_default=True, show_envvar=True
)


def _console() -> Console:
    """Rich output on stdout; piped or captured, wide enough that run ids are not cut."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 120)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="iot-playground")
def main() -> None:
    """IoT Playground tools: serve the API locally, drive it, deploy it, migrate data into it."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="HOST", help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, envvar="PORT", help="Port to listen on.")
@click.option("--stage", default="local", show_default=True, help="Stage of .chalice/config.json.")
@click.option("--no-autoreload", is_flag=True, help="Do not restart on code changes.")
def serve(host: str, port: int, stage: str, no_autoreload: bool) -> None:
    """Serve the API on HOST:PORT with an embedded DynamoDB and S3 endpoint (`make run`).

    Creates the tables and the reports bucket there and prints the admin API key (ADMIN_API_KEY,
    or a new one). DYNAMODB_ENDPOINT uses another endpoint (DynamoDB Local, an account); each
    setting of the stage can be overridden from the environment (MAX_CONCURRENT_RUNS=10 make run).
    """
    from iot_playground.local.local_stack import serve as serve_api

    sys.exit(serve_api(host, port, stage, autoreload=not no_autoreload))


@main.command()
@stage_option
@dry_run_option
@click.option("--delete", is_flag=True, help="Delete the stage's tables and bucket, data and all.")
@click.option("--endpoint-url", envvar="DYNAMODB_ENDPOINT", help="Another DynamoDB endpoint.")
@click.option("--s3-endpoint-url", envvar="S3_ENDPOINT", help="Another S3 endpoint.")
def tables(stage: str, dry_run: bool, delete: bool, **endpoints: str | None) -> None:
    """Create what is missing of a stage's DynamoDB tables and reports bucket (`make tables`)."""
    from iot_playground.deploy.guards import apply_tables

    if dry_run and delete:
        raise click.UsageError("--dry-run and --delete exclude each other")
    urls = {name: url or None for name, url in endpoints.items()}  # an empty variable is none
    sys.exit(apply_tables(stage, dry_run=dry_run, delete_all=delete, **urls))


@main.command()
@stage_option
@click.option(
    "--format", "pkg_format", type=click.Choice(["cloudformation", "terraform"]), default="cloudformation"
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="[default: dist/<stage>[-terraform]]"
)
def package(stage: str, pkg_format: str, out: Path | None) -> None:
    """Package a stage: deployment.zip and its template (`make package`, `make package-tf`)."""
    from iot_playground.deploy.packaging import package as build

    sys.exit(build(stage, pkg_format, out))


@main.command()
@check_option
def policies(check: bool) -> None:
    """Write .chalice/policy-<stage>.json, the Lambda role, for every deploy stage (`make policies`)."""
    from iot_playground.deploy.resources import write_policies

    sys.exit(write_policies(check=check))


@main.command()
def openapi() -> None:
    """Write the OpenAPI document, docs/openapi.json, which the API serves (`make openapi`)."""
    from iot_playground.openapi import DOCUMENT, write

    click.echo(f"{'wrote' if write() else 'unchanged:'} {DOCUMENT}")


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
@stage_option
@click.option("--deployed", type=click.Path(dir_okay=False, path_type=Path), help="chalice deploy's record.")
@click.option("--rest-api-id", help="The stage's REST API, when there is no record to read it from.")
@click.option("--alarm-topic-arn", envvar="ALARM_TOPIC_ARN", help="SNS topic the alarms notify.")
@click.option("--budget-email", envvar="BUDGET_EMAIL", help="Who the daily budget alerts.")
@dry_run_option
def guards(stage: str, dry_run: bool, **named: Any) -> None:
    """Apply the stage's guardrails after `chalice deploy` (`make guards`).

    Gateway responses, throttle, admin usage plan and key, alarms, the daily budget, the tables'
    maximum throughput; each step changes only what differs.
    """
    from botocore.exceptions import BotoCoreError

    from iot_playground.deploy.guards import GuardsError, run

    try:
        run(stage, dry_run=dry_run, **{name: value or None for name, value in named.items()})
    except (GuardsError, BotoCoreError) as error:  # e.g. no credentials or region in the environment
        sys.exit(f"error: {error}")


def _user(_: click.Context, __: click.Parameter, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{3,20}", value):  # the frontend's rule (the API's is wider)
        raise click.BadParameter("3-20 characters of A-Z a-z 0-9 . _ -")
    return value


@main.command()
@api_option
@click.option("--user", default="simulator", show_default=True, callback=_user, help="Sent as X-User.")
@click.option("--sensors", type=click.IntRange(1, 100), default=10, show_default=True, help="sensor-1..N")
@click.option("--count", type=click.IntRange(1), default=100, show_default=True, help="Readings per sensor.")
@click.option(
    "--interval-ms",
    type=click.IntRange(0, 3_600_000),
    default=200,
    show_default=True,
    help="Pause between one round's answers and the next round (the frontend allows 200-10000).",
)
@click.option("--batch", is_flag=True, help="Send each round as one JSON array, not one request per sensor.")
@click.option("--runs", type=click.IntRange(1, 1000), default=1, show_default=True, help="Runs at once.")
@click.option(
    "--slot-wait",
    type=click.FloatRange(0),
    help="Wait up to this many seconds for a free slot [default: refuse, as the frontend does].",
)
@click.option("--verify", is_flag=True, help="Read every run back and account for every reading.")
@click.option("--mqtt", is_flag=True, help="Publish the readings (QoS 1) instead of POSTing them.")
@click.option("--mqtt-url", default="mqtt://127.0.0.1:1883", envvar="MQTT_URL", show_default=True)
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="Write a JSON report here.")
def simulate(
    api: str, mqtt: bool, mqtt_url: str, report: Path | None, slot_wait: float | None, **plan: Any
) -> None:
    """Drive runs exactly as the frontend does, then print a summary.

    can-start, start, COUNT rounds of one reading per sensor (in parallel, one batch request, or
    with --mqtt one message each to its local sensor topic), finish; Ctrl-C finishes them as FAILED.
    With --runs N, run n is USER-n. --verify reads the runs back and counts per run and sensor what
    is missing, stored twice or unexpected (each reading then carries its round's timestamp and
    value). Exit code 0 when every reading was accepted (and found), 1 if not, 130 when interrupted.

    Example: iot-playground simulate --runs 5 --sensors 10 --count 100 --slot-wait 600 --verify
    """
    from iot_playground import clients

    if mqtt and plan["batch"]:
        raise click.UsageError("--mqtt publishes one message per reading: no --batch")
    run_plan = clients.Plan(**plan, slot_wait_s=slot_wait, mqtt_url=mqtt_url if mqtt else None)
    sys.exit(clients.simulate(api, run_plan, report_path=report, console=_console()))


@main.command("interrupt-all")
@api_option
@click.option(
    "--admin-key",
    envvar="ADMIN_API_KEY",
    required=True,
    help="The stage's admin API key (env ADMIN_API_KEY). `make run` prints it; for a deployed stage: "
    "aws apigateway get-api-key --api-key <id> --include-value.",
)
def interrupt_all(api: str, admin_key: str) -> None:
    """Interrupt every RUNNING run (POST /api/runs/interrupt-all, which needs the admin key).

    Exit code 0 when the API accepted it, 1 otherwise (403 without the right key).
    """
    from iot_playground import clients

    try:
        click.echo(asyncio.run(clients.interrupt_all(api, admin_key)))
    except clients.RequestFailed as error:
        sys.exit(str(error))


def _device_id(_: click.Context, param: click.Parameter, value: str) -> str:
    from chalicelib.schemas import RUN_ID_RE, SENSOR_ID_RE

    if not (RUN_ID_RE if param.name == "run_id" else SENSOR_ID_RE).match(value):
        raise click.BadParameter("a UUID" if param.name == "run_id" else "1-64 of A-Z a-z 0-9 . _ : -")
    return value


run_option = click.option("--run", "run_id", required=True, callback=_device_id, help="Run id.")
sensor_option = click.option("--sensor", "sensor_id", required=True, callback=_device_id, help="Sensor id.")
device_stage = click.option("--stage", type=click.Choice(DEPLOY_STAGES), default="dev", show_default=True)


def _on_aws(action: Callable[..., T], *args: Any) -> T:
    """`action(*args)`; an error of AWS's (no credentials, say) ends the command with its message."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return action(*args)
    except (BotoCoreError, ClientError) as error:
        sys.exit(f"error: {error}")


@main.group()
def device() -> None:
    """A sensor of a run as a device publishing to AWS IoT over MQTT (docs/mqtt.md)."""


@device.command("create")
@run_option
@sensor_option
@device_stage
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=".", help="Output folder.")
def device_create(run_id: str, sensor_id: str, stage: str, out: Path) -> None:
    """Create its thing, active certificate and policy; print the endpoint, write certificate and key."""
    from iot_playground.deploy.devices import create_device

    made = _on_aws(create_device, stage, run_id, sensor_id, out)
    click.echo("\n".join(f"{what + ':':13}{value}" for what, value in made.items()))


@device.command("delete")
@run_option
@sensor_option
@device_stage
def device_delete(run_id: str, sensor_id: str, stage: str) -> None:
    """Delete its certificates, thing and policy: whatever `device create` left."""
    from iot_playground.deploy.devices import delete_device

    deleted = _on_aws(delete_device, stage, run_id, sensor_id)
    click.echo("\n".join(f"deleted {what}" for what in deleted) or "nothing to delete")


@main.command()
@click.option(
    "--postgres",
    "postgres_url",
    required=True,
    envvar="OLD_BACKEND_POSTGRES_URL",
    help="The old backend's database, e.g. postgresql://user:pass@host:5432/iot.",
)
@click.option("--dry-run", is_flag=True, help="Read and compare, write nothing (not even the checkpoint).")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Only runs started and readings taken at or after this UTC time.",
)
@click.option("--stage", help="Use this stage's table names (.chalice/config.json), not the environment's.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--from-start", is_flag=True, help="Ignore the checkpoint (still writing nothing twice).")
def migrate(**options: Any) -> None:
    """Copy runs and readings from the old backend's PostgreSQL into the app's DynamoDB tables.

    Same run ids; CANCELED becomes INTERRUPTED, COMPLETED SUCCESS. Idempotent (a second pass writes
    nothing) and resumable (from a checkpoint per table, in the runs table). The target is the
    app's: RUNS_TABLE, READINGS_TABLE, DYNAMODB_ENDPOINT, or --stage.

    Example: iot-playground migrate --postgres postgresql://iot@localhost/iot --dry-run
    """
    from iot_playground import migration

    sys.exit(migration.migrate(console=_console(), **options))
