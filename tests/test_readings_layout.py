"""The old one-item-per-reading layout rewritten as chunks: complete, resumable, idempotent."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from chalicelib import clock
from tests.helpers import call, start_run

BASE_MS = 1_800_000_000_000


def _old_item(run_id: str | None, sensor: str, kind: str, value: float, at: int, user: str) -> dict[str, Any]:
    digest = hashlib.blake2b(f"{kind}{value}{user}".encode(), digest_size=8).hexdigest()
    item = {
        "pk": {"S": f"{run_id or '-'}|{sensor}"},
        "sk": {"S": f"{clock.format_ms(at)}#{digest}"},
        "sensorId": {"S": sensor},
        "type": {"S": kind},
        "reading": {"N": repr(value)},
        "timestamp": {"S": clock.format_ms(at)},
        "user": {"S": user},
        "expiresAt": {"N": str(int(time.time()) + 86_400)},
    }
    if run_id:
        item["runId"] = {"S": run_id}
    return item


@pytest.fixture
def old_layout(client):
    from chalicelib.aws import dynamodb_client
    from chalicelib.settings import get_settings

    run = start_run(client)["id"]
    table = get_settings().readings_table
    sent = []
    for i in range(300):
        run_id = run if i % 5 else None
        sensor = ("s0", "s1", "a")[i % 3]
        kind = ("temperature", "humidity")[i % 2]
        sent.append((run_id, sensor, kind, float(i), BASE_MS + 250 * i, "alice"))
    for reading in sent:
        dynamodb_client().put_item(TableName=table, Item=_old_item(*reading))
    return run, table, sent


def _stored(client, run):
    items, token = [], None
    while True:
        page = call(
            client,
            "GET",
            f"/api/sensors/data?runId={run}&order=asc&limit=1000" + (f"&nextKey={token}" if token else ""),
        )[1]
        items += page["items"]
        token = page["nextKey"]
        if token is None:
            return items


def test_old_readings_become_chunks_once_and_a_second_run_changes_nothing(client, old_layout):
    from chalicelib.aws import dynamodb_client
    from iot_playground.migration.readings_layout import migrate_layout, old_partitions

    run, table, sent = old_layout
    assert _stored(client, run) == []  # the new queries do not see the old layout
    summary = migrate_layout(dynamodb_client(), table)
    assert summary.readings == 300 and summary.chunks < 300 / 3  # ~1.5 s apart per chunk: ~7 each
    assert list(old_partitions(dynamodb_client(), table)) == []
    stored = _stored(client, run)
    want = sorted((r for r in sent if r[0] == run), key=lambda r: (r[4], r[1], r[2]))
    assert [(i["sensorId"], i["type"], i["reading"], clock.parse_iso_ms(i["timestamp"])) for i in stored] == [
        (r[1], r[2], r[3], r[4]) for r in want
    ]
    by_sensor = call(client, "GET", "/api/sensors/data?sensorId=a&limit=1000&order=asc")[1]
    assert (
        len(by_sensor["items"]) == 100 and by_sensor["nextKey"] is None
    )  # sensor "a": 20 of them without a run, 80 in the run
    again = migrate_layout(dynamodb_client(), table)
    assert (again.readings, again.chunks) == (0, 0)
    assert _stored(client, run) == stored


def test_a_migration_cut_short_goes_on_without_loss_or_duplicate(client, old_layout, monkeypatch):
    from chalicelib.aws import dynamodb_client
    from iot_playground.migration import readings_layout

    run, table, sent = old_layout
    real = dynamodb_client()
    done: list[int] = []

    class Dying:
        def __getattr__(self, name):
            return getattr(real, name)

        def transact_write_items(self, **kwargs):
            if len(done) == 7:
                raise KeyboardInterrupt
            done.append(1)
            return real.transact_write_items(**kwargs)

    with pytest.raises(KeyboardInterrupt):
        readings_layout.migrate_layout(Dying(), table)  # type: ignore[arg-type]
    rest = readings_layout.migrate_layout(real, table)
    assert 0 < rest.readings < 300
    stored = _stored(client, run)
    assert sorted(i["reading"] for i in stored) == sorted(r[3] for r in sent if r[0] == run)
