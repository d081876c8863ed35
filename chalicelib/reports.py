"""Report downloads: one run's readings as CSV, and a ZIP of the newest finished runs.

- `GET /api/runs/{id}/readings.csv`: the run's readings, oldest first.
- `GET /api/reports/download`: `summary.csv` (one row per run: the run, its statistics from
  `analytics.py`, its file and whether that file holds every reading) and
  `runs/<startedAt>-<runId>.csv` for each of the newest REPORT_RUNS finished runs; with `runId`,
  also `readings-<runId>.csv` for that run, finished or not.

Both read under one `Budget` per request (MAX_EXPORT_PAGES Query calls, none after
EXPORT_SECONDS), so a request ends well inside the Lambda timeout. What the budget cuts is said:
`complete=false` in the run's summary row and `X-Export-Complete: false` (with `X-Next-Key` for
readings.csv). A download too large for Lambda's 6 MB response goes to the stage's reports
bucket; the answer is a 303 to a presigned URL. Text cells are data, never formulas.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import time
import zipfile
from collections.abc import Callable, Iterable
from typing import Any

from chalice.app import Response

from chalicelib.analytics import SUMMARY_COLUMNS, RunAnalytics
from chalicelib.readings import Budget, Key, ReadingQuery, ReadingRepository
from chalicelib.runs import TERMINAL_STATUSES, Run, RunRepository
from chalicelib.schemas import format_ms, now_ms

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
SUMMARY_FILE = "summary.csv"
MAX_EXPORT_PAGES = 300  # Query calls per request: 300,000 readings, ~22 MB of CSV
EXPORT_SECONDS = 8.0  # no page is read after this: the upload and the answer fit in the 15 s timeout
MAX_REPORT_RUNS = 100  # whatever REPORT_RUNS says
# Lambda carries at most 6 MB of response; this leaves room for the headers and JSON envelope.
RESPONSE_LIMIT_BYTES = 5 * 1024 * 1024
LINK_SECONDS = 300  # how long a download link in the reports bucket works
CSV_TYPE, ZIP_TYPE = "text/csv; charset=utf-8", "application/zip"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads these as formulas (OWASP)


def export_budget() -> Budget:
    return Budget(MAX_EXPORT_PAGES, time.monotonic() + EXPORT_SECONDS)


def _text(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def _csv(rows: Iterable[Iterable[Any]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


READING_HEADER = _csv([READING_COLUMNS])


def copy_readings(
    readings: ReadingRepository,
    run_id: str,
    write: Callable[[str], object],
    budget: Budget,
    after: Key | None = None,
) -> tuple[bool, Key | None]:
    """The run's readings from `after` on, oldest first, as CSV rows into `write`, until the last
    one or the budget; (complete, where to go on)."""
    stream = readings.stream(ReadingQuery(run_id, ascending=True), budget, after=after)
    rows = (
        (_text(r.sensor_id), _text(r.type), r.value, format_ms(r.timestamp_ms), _text(r.user)) for r in stream
    )
    write(_csv(rows))
    return stream.complete, stream.next_key


def readings_csv(readings: ReadingRepository, run_id: str, after: Key | None) -> tuple[str, bool, Key | None]:
    out = io.StringIO(READING_HEADER)
    out.seek(0, io.SEEK_END)
    complete, next_key = copy_readings(readings, run_id, out.write, export_budget(), after)
    return out.getvalue(), complete, next_key


def finished_runs(runs: RunRepository, count: int) -> list[Run]:
    """The newest `count` finished runs: one page of the newest runs, longer by the run limit,
    since at most that many of them are still RUNNING."""
    count = min(count, MAX_REPORT_RUNS)
    return [r for r in runs.newest(limit=count + runs.max_running) if r.status in TERMINAL_STATUSES][:count]


def run_file_name(run: Run) -> str:
    # No ':' (Windows refuses it in file names); the run id keeps runs of the same second apart.
    return f"runs/{format_ms(run.started_ms)[:19].replace(':', '').replace('-', '')}Z-{run.id}.csv"


def build_zip(
    analytics: RunAnalytics, readings: ReadingRepository, runs: list[Run], extra_run_id: str | None
) -> tuple[bytes, bool]:
    """summary.csv and one readings file per run, each compressed as it is written; and whether
    every file holds every reading of its run."""
    buffer, rows, budget = io.BytesIO(), [], export_budget()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        def write_file(name: str, run_id: str) -> bool:
            info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])  # by name alone: dated 1980
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as entry:
                entry.write(READING_HEADER.encode())
                return copy_readings(readings, run_id, lambda text: entry.write(text.encode()), budget)[0]

        complete = write_file(f"readings-{extra_run_id}.csv", extra_run_id) if extra_run_id else True
        for run in runs:
            name = run_file_name(run)
            whole = write_file(name, run.id)
            complete = complete and whole
            columns = {
                "id": run.id,
                "username": _text(run.username),
                "status": run.status,
                "startedAt": format_ms(run.started_ms),
                "finishedAt": format_ms(run.finished_ms) if run.finished_ms is not None else "",
                "duration": run.duration,
                "interval": run.interval,
                "sensors": _text(" ".join(run.sensor_ids)),
                "errorMessage": _text(run.error_message or ""),
            }
            figures = analytics.stats(run).fold.summary_row(run)
            rows.append({**columns, **figures, "file": name, "complete": str(whole).lower()})
        writer = csv.DictWriter(
            out := io.StringIO(), fieldnames=(*RUN_COLUMNS, *SUMMARY_COLUMNS, "file", "complete")
        )
        writer.writeheader()
        writer.writerows(rows)
        archive.writestr(SUMMARY_FILE, out.getvalue())
    return buffer.getvalue(), complete


def response_bytes(body: str | bytes) -> int:
    """The body's size in Lambda's response: base64 for bytes, a JSON string for text."""
    return 4 * -(-len(body) // 3) if isinstance(body, bytes) else len(json.dumps(body))


def download(
    body: str | bytes,
    content_type: str,
    filename: str,
    headers: dict[str, str],
    put_in_bucket: Callable[..., str],
) -> Response:
    """The download as the answer, or over RESPONSE_LIMIT_BYTES a 303 to it in the reports bucket
    (`put_in_bucket(data, key, content_type, filename) -> presigned URL`)."""
    if response_bytes(body) <= RESPONSE_LIMIT_BYTES:
        disposition = {
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
        return Response(body=body, status_code=200, headers={**disposition, **headers})
    key = f"downloads/{format_ms(now_ms())[:19].replace(':', '')}-{secrets.token_hex(8)}/{filename}"
    url = put_in_bucket(body.encode() if isinstance(body, str) else body, key, content_type, filename)
    return Response(
        body=json.dumps({"location": url, "expiresIn": LINK_SECONDS}),
        status_code=303,
        headers={"Location": url, "Content-Type": "application/json", **headers},
    )


def put_and_link(s3: Any, bucket: str, data: bytes, key: str, content_type: str, filename: str) -> str:
    """Put a download in the reports bucket (which expires it after a day); a GET URL for it."""
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    params = {
        "Bucket": bucket,
        "Key": key,
        "ResponseContentDisposition": f'attachment; filename="{filename}"',
        "ResponseContentType": content_type,
    }
    return str(s3.generate_presigned_url("get_object", Params=params, ExpiresIn=LINK_SECONDS))


def report_filename() -> str:
    return f"iot-playground-report-{format_ms(now_ms())[:19].replace(':', '')}.zip"
