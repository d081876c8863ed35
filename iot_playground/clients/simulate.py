"""`iot-playground simulate`: one run, exactly as the frontend drives it, with a summary."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from iot_playground.clients.api_client import PlaygroundApi, RequestFailed
from iot_playground.clients.run_driver import RunDriver, RunOutcome, RunPlan
from iot_playground.clients.stats import format_ms, latency_summary, rate
from iot_playground.common.console import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, progress_bar


def cancel_on_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C does: finished as FAILED, summary printed."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


async def _simulate(api_url: str, driver_args: dict[str, Any], plan: RunPlan, outcome: RunOutcome) -> None:
    cancel_on_sigterm()
    async with PlaygroundApi(api_url, max_connections=plan.sensors + 2) as api:
        await RunDriver(api, plan, outcome, **driver_args).run()


def run_simulation(api_url: str, plan: RunPlan, *, report_path: Path | None, console: Console) -> int:
    outcome = RunOutcome()
    progress = progress_bar(Console(stderr=True))
    task = progress.add_task("readings", total=plan.total_readings, note="")
    driver_args: dict[str, Any] = {
        "on_progress": lambda n: progress.advance(task, n),
        "on_started": lambda run_id: progress.console.print(f"run {run_id} started"),
    }
    with progress:
        try:
            asyncio.run(_simulate(api_url, driver_args, plan, outcome))
        except (KeyboardInterrupt, asyncio.CancelledError):
            outcome.interrupted = True
        except RequestFailed as error:
            outcome.error = error.message
    summary = simulation_summary(api_url, plan, outcome)
    render_summary(console, summary)
    if report_path is not None:
        report_path.write_text(json.dumps(summary, indent=2) + "\n")
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if outcome.error or outcome.failed else EXIT_OK


def simulation_summary(api_url: str, plan: RunPlan, outcome: RunOutcome) -> dict[str, Any]:
    return {
        "api": api_url,
        "runId": outcome.run_id,
        "status": outcome.status,
        "user": plan.user,
        "sensors": plan.sensors,
        "count": plan.count,
        "intervalMs": plan.interval_ms,
        "batch": plan.batch,
        "planned": plan.total_readings,
        "sent": outcome.sent,
        "failed": outcome.failed,
        "requests": outcome.requests,
        "sendingSeconds": round(outcome.sending_seconds, 3),
        "readingsPerSecond": rate(outcome.sent, outcome.sending_seconds),
        "latencyMs": latency_summary(outcome.latencies_ms),
        "interrupted": outcome.interrupted,
        "error": outcome.error,
        "finishError": outcome.finish_error,
    }


def render_summary(console: Console, summary: dict[str, Any]) -> None:
    latency = summary["latencyMs"]
    table = Table(title="simulation summary", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("run", str(summary["runId"] or "-"))
    table.add_row("status", str(summary["status"]))
    table.add_row("readings planned", str(summary["planned"]))
    table.add_row("readings sent", str(summary["sent"]))
    table.add_row("readings failed", str(summary["failed"]))
    table.add_row("throughput", f"{summary['readingsPerSecond']:.1f} readings/s")
    for p in ("p50", "p95", "p99"):
        table.add_row(f"latency {p}", format_ms(latency[p]))
    console.print(table)
    if summary["interrupted"] and summary["runId"] and not summary["finishError"]:
        console.print("interrupted: the run was finished as FAILED")
    elif summary["interrupted"]:
        console.print("interrupted")
    if summary["error"]:
        console.print(f"error: {summary['error']}")
    if summary["finishError"]:
        console.print(f"finishing the run failed: {summary['finishError']}")
