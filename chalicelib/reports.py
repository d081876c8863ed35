"""Report downloads: one run's readings as CSV, and the ZIP of the newest finished runs.

- `GET /api/runs/{id}/readings.csv`: every reading of the run, oldest first.
- `GET /api/reports/download`: `summary.csv` (one row per run: the run and its stats) and
  `runs/<startedAt>-<runId>.csv` (its readings) for each of the newest REPORT_RUNS finished
  runs; with `runId`, also `readings-<runId>.csv` for that run, finished or not.

Both read the readings page by page (ReadingRepository.query, oldest first) under one
`Budget` per request: at most MAX_EXPORT_PAGES pages of PAGE_READINGS readings, and no new
page after EXPORT_SECONDS, so a request ends well inside the Lambda timeout however long
the run. What the budget leaves out is said: `complete=false` in summary.csv, and for
readings.csv `X-Export-Complete: false` with `X-Next-Key`, the `nextKey` that goes on.

A download over RESPONSE_LIMIT_BYTES (as Lambda would carry it) does not fit Lambda's 6 MB
response: it goes to the stage's reports bucket and the answer is a 303 to a presigned GET
URL (chalicelib/report_store.py).

Text cells are written as data, never formulas (`_text`). Every CSV is UTF-8 with CRLF rows.
"""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from chalice.app import Response

from chalicelib import clock, run_stats
from chalicelib.readings import Cursor, Reading, ReadingQuery, ReadingRepository
from chalicelib.run_shape import TERMINAL_STATUSES, Run
from chalicelib.run_stats import RunStatsFold
from chalicelib.runs import RunRepository

READING_COLUMNS = ("sensorId", "type", "reading", "timestamp", "user")
RUN_COLUMNS = (
    "id",
    "username",
    "status",
    "startedAt",
    "finishedAt",
    "duration",
    "interval",
    "sensors",
    "errorMessage",
)
SUMMARY_COLUMNS = (*RUN_COLUMNS, *run_stats.SUMMARY_COLUMNS)
# What the download itself says about each run: its file in the ZIP, and whether that file
# (and the stats) hold every reading of the run or stopped at the request's budget.
EXPORT_COLUMNS = ("file", "complete")
SUMMARY_FILE = "summary.csv"

# Readings per ReadingRepository.query call (its maximum).
PAGE_READINGS = 1000
# Per request, both routes: 300 pages are 300,000 readings (~22 MB of CSV), at most
# 3 Query calls each (paging.MAX_QUERY_CALLS).
MAX_EXPORT_PAGES = 300
# No page is read after this: the upload and the answer fit in the rest of the 15 s timeout.
EXPORT_SECONDS = 8.0
# The most finished runs one ZIP holds, whatever REPORT_RUNS says.
MAX_REPORT_RUNS = 100
# Lambda carries at most 6 MB (6,291,456 bytes) of response; this leaves room for the
# headers and the JSON envelope around the body.
RESPONSE_LIMIT_BYTES = 5 * 1024 * 1024

CSV_TYPE = "text/csv; charset=utf-8"
ZIP_TYPE = "application/zip"

# A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    """A text cell as data, never a formula: prefixed with ' when it could start one."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def _iso(epoch_ms: int | None) -> str:
    return clock.format_ms(epoch_ms) if epoch_ms is not None else ""


def _csv_text(rows: Iterable[Iterable[Any]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


READING_HEADER = _csv_text([READING_COLUMNS])


# ---- the budget --------------------------------------------------------------


@dataclass(slots=True)
class Budget:
    """The reading pages one request may still read (see the module's docstring)."""

    pages: int = field(default_factory=lambda: MAX_EXPORT_PAGES)
    deadline: float = field(default_factory=lambda: time.monotonic() + EXPORT_SECONDS)

    def take(self) -> bool:
        if self.pages <= 0 or time.monotonic() >= self.deadline:
            return False
        self.pages -= 1
        return True


@dataclass(frozen=True, slots=True)
class Copied:
    readings: int
    complete: bool
    # Where to go on from when not complete (None if the budget was spent before any page).
    next_key: Cursor | None


def copy_readings(
    repository: ReadingRepository,
    run_id: str,
    write: Callable[[str], object],
    budget: Budget,
    fold: RunStatsFold | None = None,
    start_key: Cursor | None = None,
) -> Copied:
    """The run's readings from `start_key` on, oldest first, as CSV rows (no header) into
    `write`, a page at a time, each reading also into `fold`; until the last one or the budget."""
    query = ReadingQuery(run_id=run_id, order="asc")
    key, count = start_key, 0
    while budget.take():
        page = repository.query(query, limit=PAGE_READINGS, start_key=key)
        write(_csv_text(_reading_row(r) for r in page.readings))
        if fold is not None:
            for reading in page.readings:
                fold.add(reading)
        count += len(page.readings)
        key = page.last_key
        if key is None:
            return Copied(count, True, None)
    return Copied(count, False, key)


def _reading_row(r: Reading) -> tuple[Any, ...]:
    return (_text(r.sensor_id), _text(r.type), r.value, _iso(r.timestamp_ms), _text(r.user))


def readings_csv(
    repository: ReadingRepository, run_id: str, budget: Budget, start_key: Cursor | None = None
) -> tuple[str, Copied]:
    """`GET /api/runs/{id}/readings.csv`: the header, then the readings the budget allows."""
    out = io.StringIO()
    out.write(READING_HEADER)
    copied = copy_readings(repository, run_id, out.write, budget, start_key=start_key)
    return out.getvalue(), copied


# ---- the summary -------------------------------------------------------------


def _run_columns(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "username": _text(run.username),
        "status": run.status,
        "startedAt": _iso(run.started_ms),
        "finishedAt": _iso(run.finished_ms),
        "duration": run.duration,
        "interval": run.interval,
        "sensors": _text(" ".join(run.sensor_ids)),
        "errorMessage": _text(run.error_message or ""),
    }


def _summary_row(run: Run, fold: RunStatsFold) -> dict[str, Any]:
    """One summary.csv row (SUMMARY_COLUMNS): the run, then the stats of its readings."""
    return {**_run_columns(run), **fold.summary_row(run)}


def run_file_name(run: Run) -> str:
    # No ':' (Windows file names refuse it); the run id keeps names of equal seconds apart.
    started = clock.format_ms(run.started_ms)[:19].replace(":", "").replace("-", "")
    return f"runs/{started}Z-{run.id}.csv"


# ---- the ZIP -------------------------------------------------------------------


def finished_runs(runs: RunRepository, count: int) -> list[Run]:
    """The newest `count` finished runs: one page of the newest runs, `count` plus the run
    limit long, since at most that many of them are still RUNNING."""
    count = min(count, MAX_REPORT_RUNS)
    newest = runs.newest(limit=count + runs.max_concurrent_runs)
    return [run for run in newest if run.status in TERMINAL_STATUSES][:count]


def build_zip(
    readings: ReadingRepository, runs: list[Run], budget: Budget, extra_run_id: str | None = None
) -> bytes:
    """summary.csv and one readings file per run (see the module's docstring). Each file is
    compressed as it is written: memory holds the ZIP, not the CSV text."""
    buffer = io.BytesIO()
    rows: list[dict[str, Any]] = []
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        def write_file(name: str, run_id: str, fold: RunStatsFold | None) -> Copied:
            # A ZipInfo of its own: opened by name, the entry would be dated 1980.
            info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as entry:
                entry.write(READING_HEADER.encode())
                return copy_readings(readings, run_id, lambda text: entry.write(text.encode()), budget, fold)

        if extra_run_id is not None:
            write_file(f"readings-{extra_run_id}.csv", extra_run_id, None)
        for run in runs:
            fold = RunStatsFold()
            name = run_file_name(run)
            copied = write_file(name, run.id, fold)
            rows.append({**_summary_row(run, fold), "file": name, "complete": str(copied.complete).lower()})
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=(*SUMMARY_COLUMNS, *EXPORT_COLUMNS), extrasaction="raise")
        writer.writeheader()
        writer.writerows(rows)
        archive.writestr(SUMMARY_FILE, out.getvalue())
    return buffer.getvalue()


# ---- the answer ----------------------------------------------------------------


def response_bytes(body: str | bytes) -> int:
    """The body's size in Lambda's response: base64 for bytes, a JSON string for text."""
    if isinstance(body, bytes):
        return 4 * -(-len(body) // 3)
    return len(json.dumps(body))


def download(
    body: str | bytes, *, content_type: str, filename: str, headers: dict[str, str] | None = None
) -> Response:
    """The download as the answer, or, over RESPONSE_LIMIT_BYTES, a 303 to it in the reports bucket."""
    headers = headers or {}
    if response_bytes(body) <= RESPONSE_LIMIT_BYTES:
        return Response(
            body=body,
            status_code=200,
            headers={
                "Content-Type": content_type,
                "Content-Disposition": f'attachment; filename="{filename}"',
                **headers,
            },
        )
    from chalicelib import report_store

    data = body.encode() if isinstance(body, str) else body
    url = report_store.put_and_link(data, content_type=content_type, filename=filename)
    return Response(
        body=json.dumps({"location": url, "expiresIn": report_store.LINK_SECONDS}),
        status_code=303,
        headers={"Location": url, "Content-Type": "application/json", **headers},
    )


def report_filename() -> str:
    stamp = clock.format_ms(clock.now_ms())[:19].replace(":", "")
    return f"iot-playground-report-{stamp}.zip"
