"""`GET /api/reports/download`: the run history (and optionally one run's readings) as a ZIP of CSV files."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable

from chalicelib import clock
from chalicelib.readings import ReadingQuery, ReadingRepository
from chalicelib.runs import Run

RUN_COLUMNS = (
    "id",
    "username",
    "status",
    "startedAt",
    "finishedAt",
    "duration",
    "interval",
    "sensorIds",
    "errorMessage",
)
READING_COLUMNS = ("timestamp", "sensorId", "type", "reading", "user")
# A report is a download in one response: bounded so it fits Lambda's 6 MB payload.
MAX_REPORT_RUNS = 1000
MAX_REPORT_READINGS = 20_000
MAX_REPORT_PAGES = 20


# A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    """A text cell as data, never a formula: prefixed with ' when it could start one."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def _iso(epoch_ms: int | None) -> str:
    return clock.format_ms(epoch_ms) if epoch_ms is not None else ""


def runs_csv(runs: Iterable[Run]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(RUN_COLUMNS)
    for run in runs:
        writer.writerow(
            (
                run.id,
                _text(run.username),
                run.status,
                _iso(run.started_ms),
                _iso(run.finished_ms),
                run.duration,
                run.interval,
                _text(" ".join(run.sensor_ids)),
                _text(run.error_message or ""),
            )
        )
    return out.getvalue()


def readings_csv(repository: ReadingRepository, run_id: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(READING_COLUMNS)
    key = None
    written = 0
    # Bounded in pages too: a page may hold fewer readings than asked (bounded work per request).
    for _ in range(MAX_REPORT_PAGES):
        if written >= MAX_REPORT_READINGS:
            break
        page = repository.query(
            ReadingQuery(run_id=run_id, order="asc"),
            limit=min(1000, MAX_REPORT_READINGS - written),
            start_key=key,
        )
        for r in page.readings:
            writer.writerow((_iso(r.timestamp_ms), _text(r.sensor_id), _text(r.type), r.value, _text(r.user)))
        written += len(page.readings)
        key = page.last_key
        if key is None:
            break
    return out.getvalue()


def build_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()
