"""`iot-playground migrate` against a real PostgreSQL holding the old backend's schema.

The suite starts its own server on loopback (initdb into a temporary directory,
then pg_ctl on a free port); the DynamoDB side is moto (the `aws` fixture).
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from iot_playground.local.local_stack import free_port

OLD_SCHEMA = """
CREATE TABLE runs (
    id uuid PRIMARY KEY,
    username varchar(255),
    status varchar(32),
    started_at timestamp,
    finished_at timestamp,
    params jsonb,
    error_message text,
    grafana_url varchar(1024)
);
CREATE TABLE sensor_data (
    id bigserial PRIMARY KEY,
    sensor_id varchar(255),
    type varchar(64),
    reading double precision,
    timestamp timestamp
);
"""
BASE_TIME = datetime(2024, 5, 1, 10, 0, 0)
OLD_STATUSES = ["COMPLETED", "CANCELED", "FAILED", "RUNNING", "SUCCESS", "TIMEOUT", "COMPLETED"]
EXPECTED_STATUS = {
    "COMPLETED": "SUCCESS",
    "CANCELED": "INTERRUPTED",
    "FAILED": "FAILED",
    "RUNNING": "INTERRUPTED",
    "SUCCESS": "SUCCESS",
    "TIMEOUT": "TIMEOUT",
}


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A throwaway cluster; as root it runs as the `postgres` user (postgres refuses root)."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="iot-playground-pg-"))
        self.data = self.root / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.root / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        with_data = self.data.exists()
        if with_data:
            subprocess.run(
                [
                    *self.as_user,
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "stop",
                ],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = _postgres_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries are missing (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def old_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database with the old backend's schema; yields its URL."""
    import psycopg

    name = f"old_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = postgres_server.url(name)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(OLD_SCHEMA)
    yield url
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _fill(url: str, runs: int, readings: int, *, with_run_column: bool = False) -> list[dict[str, Any]]:
    """Old rows shaped like the old backend's; returns the runs as inserted."""
    import psycopg
    from psycopg.types.json import Jsonb

    inserted: list[dict[str, Any]] = []
    with psycopg.connect(url, autocommit=True) as connection:
        if with_run_column:
            connection.execute("ALTER TABLE sensor_data ADD COLUMN run_id uuid")
        for n in range(runs):
            run_id = uuid.uuid4()
            status = OLD_STATUSES[n % len(OLD_STATUSES)]
            started = BASE_TIME + timedelta(hours=n)
            finished = None if status == "RUNNING" else started + timedelta(seconds=20)
            params = {
                "runId": str(run_id),
                "sensorIds": ["sensor-1", "sensor-2"],
                "duration": 20,
                "interval": 1,
            }
            error = "Abandonnée par l'utilisateur" if status in ("FAILED", "CANCELED") else None
            connection.execute(
                "INSERT INTO runs VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    run_id,
                    f"user{n % 3}",
                    status,
                    started,
                    finished,
                    Jsonb(params),
                    error,
                    "http://grafana/old",
                ),
            )
            inserted.append({"id": str(run_id), "status": status, "started": started, "user": f"user{n % 3}"})
        for n in range(readings):
            run = inserted[n % len(inserted)] if with_run_column and inserted else None
            values: list[Any] = [f"sensor-{n % 4 + 1}", "temperature", round(15 + n % 200 / 10, 1)]
            values.append(BASE_TIME + timedelta(seconds=n // 4))  # four readings share each second
            columns = "sensor_id, type, reading, timestamp"
            if run is not None:
                columns += ", run_id"
                values.append(run["id"])
            placeholders = ", ".join(["%s"] * len(values))
            connection.execute(f"INSERT INTO sensor_data ({columns}) VALUES ({placeholders})", values)
    return inserted


def _invoke(*args: str) -> tuple[int, str]:
    from iot_playground.cli import main

    result = CliRunner().invoke(main, ["migrate", *args], catch_exceptions=False)
    return result.exit_code, result.output


def _summary_row(output: str, table: str) -> list[int]:
    """(read, written, already there, skipped) from the summary table's row."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.replace("│", "|").split("|") if c.strip()]
        if cells and cells[0] == table:
            return [int(c) for c in cells[1:5]]
    raise AssertionError(f"no summary row for {table}:\n{output}")


def _all_items(table: str) -> list[dict[str, Any]]:
    import app

    client = app.parts().dynamodb
    items: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=table):
        items.extend(page["Items"])
    return items


def _readings_table() -> str:
    import app

    return app.parts().settings.readings_table


def _run_repository() -> Any:
    import app

    return app.parts().runs.repository


def test_every_row_arrives_once_with_mapped_statuses_and_a_rerun_writes_nothing(aws, old_database):
    runs = _fill(old_database, runs=7, readings=120)

    code, output = _invoke("--postgres", old_database, "--batch-size", "50")
    assert code == 0, output
    assert _summary_row(output, "runs") == [7, 7, 0, 0]
    assert _summary_row(output, "sensor_data") == [120, 120, 0, 0]

    repository = _run_repository()
    for old in runs:
        run = repository.get(old["id"])
        assert run is not None, old
        assert run.status == EXPECTED_STATUS[old["status"]]
        assert run.username == old["user"]
        assert run.sensor_ids == ("sensor-1", "sensor-2")
        assert run.duration == 20
        assert run.started_ms == int(old["started"].replace(tzinfo=UTC).timestamp() * 1000)
        if old["status"] in ("FAILED", "CANCELED"):
            assert run.error_message == "Abandonnée par l'utilisateur"
        if old["status"] == "RUNNING":
            assert run.error_message == "still RUNNING in the old backend when it was migrated"
    # Imported runs are terminal: none of them holds a slot or shows as running.
    assert repository.count_running() == 0
    assert repository.newest(status="RUNNING") == []

    readings = _all_items(_readings_table())
    assert len(readings) == 120
    keys = {(item["pk"]["S"], item["sk"]["S"]) for item in readings}
    assert len(keys) == 120
    # No run column: no run; each sensor's readings in its own partition, as the API keeps them.
    assert all(
        item["pk"]["S"] == "sensor#" + item["sensorId"]["S"] and "runId" not in item for item in readings
    )
    assert sorted(_values(item)[0] for item in readings) == sorted(
        round(15 + n % 200 / 10, 1) for n in range(120)
    )

    code, output = _invoke("--postgres", old_database, "--batch-size", "50")
    assert code == 0, output
    assert _summary_row(output, "runs")[1] == 0
    assert _summary_row(output, "sensor_data")[1] == 0
    # Even re-reading everything past the checkpoint finds every row already there.
    code, output = _invoke("--postgres", old_database, "--from-start")
    assert code == 0, output
    assert _summary_row(output, "runs") == [7, 0, 7, 0]
    assert _summary_row(output, "sensor_data") == [120, 0, 120, 0]
    assert len(_all_items(_readings_table())) == 120


def test_an_interrupted_migration_resumes_without_duplicates(aws, old_database):
    from iot_playground.migration import migrate

    _fill(old_database, runs=3, readings=95)

    def interrupt_after_third_reading_batch(table: str, batch: int) -> None:
        # Ctrl-C after the batch is written but before its checkpoint: the worst moment.
        if table == "sensor_data" and batch == 3:
            raise KeyboardInterrupt

    output = io.StringIO()
    code = migrate(
        old_database,
        batch_size=20,
        stage=None,
        console=Console(file=output, width=120),
        after_batch=interrupt_after_third_reading_batch,
    )
    assert code == 130, output.getvalue()
    assert "run the same command again" in output.getvalue()
    assert len(_all_items(_readings_table())) == 60

    code, text = _invoke("--postgres", old_database, "--batch-size", "20")
    assert code == 0, text
    # It went on from the checkpoint (after batch 2): batch 3 again, found there, then the rest.
    assert _summary_row(text, "runs") == [0, 0, 0, 0]
    assert _summary_row(text, "sensor_data") == [55, 35, 20, 0]
    assert "sensor_data: resumed after the checkpoint at id 40" in text
    readings = _all_items(_readings_table())
    assert len(readings) == 95
    assert len({(item["pk"]["S"], item["sk"]["S"]) for item in readings}) == 95


def test_dry_run_writes_nothing_and_counts_what_it_would(aws, old_database):
    _fill(old_database, runs=2, readings=10)
    code, output = _invoke("--postgres", old_database, "--dry-run")
    assert code == 0, output
    assert _summary_row(output, "runs") == [2, 2, 0, 0]
    assert _summary_row(output, "sensor_data") == [10, 10, 0, 0]
    assert _all_items(_readings_table()) == []
    assert _run_repository().newest() == []
    # No checkpoint either: the real migration then reads everything.
    code, output = _invoke("--postgres", old_database)
    assert _summary_row(output, "sensor_data") == [10, 10, 0, 0]


def _values(item):
    return [float(item["reading"]["N"])]


def test_readings_join_their_run_when_the_old_table_has_a_run_column(aws, old_database):
    runs = _fill(old_database, runs=2, readings=8, with_run_column=True)
    code, output = _invoke("--postgres", old_database)
    assert code == 0, output
    readings = _all_items(_readings_table())
    assert len(readings) == 8
    by_run = {run["id"]: run for run in runs}
    for item in readings:
        run_id = item["pk"]["S"]
        assert run_id in by_run
        assert item["user"]["S"] == by_run[run_id]["user"]


def test_since_limits_the_import_and_keeps_its_own_checkpoint(aws, old_database):
    _fill(old_database, runs=4, readings=40)  # runs start hourly from BASE_TIME, readings 4 per second
    since = (BASE_TIME + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
    code, output = _invoke("--postgres", old_database, "--since", since)
    assert code == 0, output
    assert _summary_row(output, "runs") == [2, 2, 0, 0]
    assert _summary_row(output, "sensor_data") == [0, 0, 0, 0]
    # A full import afterwards is not fooled by the partial one's checkpoint.
    code, output = _invoke("--postgres", old_database)
    assert _summary_row(output, "runs") == [4, 2, 2, 0]
    assert _summary_row(output, "sensor_data") == [40, 40, 0, 0]


def test_unusable_rows_are_skipped_and_reported(aws, old_database):
    import psycopg

    with psycopg.connect(old_database, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO runs (id, username, status, started_at) VALUES (%s, 'bob', 'PAUSED', now())",
            (uuid.uuid4(),),
        )
        connection.execute(
            "INSERT INTO sensor_data (sensor_id, reading, timestamp) VALUES ('s1', NULL, now())"
        )
        connection.execute(
            "INSERT INTO sensor_data (sensor_id, reading, timestamp) VALUES ('s1', 20.5, now())"
        )
    code, output = _invoke("--postgres", old_database)
    assert code == 0, output
    assert _summary_row(output, "runs") == [1, 0, 0, 1]
    assert _summary_row(output, "sensor_data") == [2, 1, 0, 1]
    assert "runs: skipped 1 row(s): unknown status PAUSED" in output
    assert "sensor_data: skipped 1 row(s): no reading" in output
    [item] = _all_items(_readings_table())
    assert item["type"]["S"] == "temperature"  # the default, as for readings posted without a type


def test_an_unreachable_database_is_a_clear_failure(aws):
    code, output = _invoke("--postgres", f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    assert code == 1
    assert "migration failed" in output
