"""The DynamoDB tables: the one definition that tests, the local stack and the
deployment templates are all generated from.

Runs
    One item per run, keyed by ``id``, its attributes named in ``run_shape.py``. A
    second kind of item, ``RUN_SLOTS_ID``, holds the number of RUNNING runs, and one
    per user (``user_slots_id``) that user's; start/finish transactions move them,
    which is how the global and the per-user limits hold under concurrency. A third
    kind, keyed ``IDEMPOTENCY_PREFIX + <digest>``, remembers requests sent with an
    ``Idempotency-Key`` (see ``idempotency.py``) and expires by TTL. A fourth, keyed
    ``run_stats.STATS_PREFIX + <runId>``, keeps the statistics fold of an ended run
    (see ``run_stats.py``). The three indexes are sparse (only run items carry their
    keys) and each serves one list.

Readings
    No index: every index an item is in bills its write again. Key ``pk = <runId>``
    (``NO_RUN`` for readings without a run) and ``sk = "<ISO ms time of the chunk's
    first reading>#<sensorId>#<type>#<digest>"``. One item is a *chunk*: the readings
    of one (run, sensor, type, user) from one request, sorted by time, packed into the
    binary attribute ``d`` as msgpack ``[dt, value, dt, value, ...]`` (``dt`` in ms
    from the previous reading), with ``sensorId``, ``type``, ``user``, ``firstAt``,
    ``lastAt`` (epoch ms), ``n`` (count) and ``expiresAt`` (TTL). A chunk spans at
    most ``readings.CHUNK_SPAN_MS`` and stays within ``readings.MAX_CHUNK_BYTES`` of
    item size. The digest is over the chunk's content (``readings.chunk_digest``):
    a re-sent chunk lands on its own key, stored once; different content never shares
    a key. Queries read one run's partition in ``sk`` order (see ``readings._Scan``);
    a sensor alone walks the runs that declared it (runs-by-start) and then ``NO_RUN``.

    The arithmetic (on-demand DynamoDB bills a write ceil(item size / 1 KB) units,
    per item and again per index carrying it). The item size counts attribute names
    and values: a single reading's chunk is ~190-230 bytes (pk 38, sk ~60, the
    attributes ~80, ``d`` 11, ``expiresAt`` 14), so **1 write unit per single
    reading** (it was 3: the item plus two ALL-projected indexes). Each further
    reading in a chunk adds ~10-13 bytes to ``d`` (a delta of 1-3 bytes and a 9-byte
    float), so a 1 KB chunk holds ~60 readings: a batch of 100 readings from 10
    sensors (10 each, within CHUNK_SPAN_MS) is 10 chunks, **0.1 write unit per
    reading**; a measurement object (3 types of one sensor) is 3 chunks of one,
    1 unit per reading. The cost per reading falls with readings per (sensor, type)
    per request, down to ~1/60.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from chalicelib.run_shape import Attr as RunAttr
from chalicelib.settings import Settings

KeyType = Literal["S", "N", "B"]

RUNS_BY_START_INDEX = "runs-by-start"
RUNS_BY_STATUS_INDEX = "runs-by-status"
RUNS_BY_USER_INDEX = "runs-by-user"
# The indexes older versions kept on the readings table; `make tables` drops them.
RETIRED_READINGS_INDEXES = ("readings-by-run", "readings-by-sensor")

RUN_SLOTS_ID = "#running-slots"
IDEMPOTENCY_PREFIX = "#request#"
TTL_ATTRIBUTE = "expiresAt"
NO_RUN = "-"


def user_slots_id(username: str) -> str:
    return f"{RUN_SLOTS_ID}#{username}"


@dataclass(frozen=True, slots=True)
class Index:
    name: str
    partition_key: str
    sort_key: str | None = None


@dataclass(frozen=True, slots=True)
class TableDefinition:
    """Logical name plus keys; the physical name comes from the stage settings."""

    logical_name: Literal["runs", "readings"]
    partition_key: str
    sort_key: str | None
    attribute_types: dict[str, KeyType]
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None

    def page_key_attributes(self, index_name: str | None = None) -> tuple[str, ...]:
        """The attributes of a LastEvaluatedKey: the table's key, plus the index's when querying one."""
        names = [self.partition_key, self.sort_key]
        for index in self.indexes:
            if index.name == index_name:
                names = [index.partition_key, index.sort_key, *names]
        return tuple(dict.fromkeys(n for n in names if n is not None))

    def table_name(self, settings: Settings) -> str:
        return settings.runs_table if self.logical_name == "runs" else settings.readings_table

    def key_schema(self) -> list[dict[str, str]]:
        return _key_schema(self.partition_key, self.sort_key)

    def attribute_definitions(self) -> list[dict[str, str]]:
        used = {self.partition_key, self.sort_key}
        for index in self.indexes:
            used |= {index.partition_key, index.sort_key}
        return [
            {"AttributeName": name, "AttributeType": self.attribute_types[name]}
            for name in sorted(n for n in used if n is not None)
        ]

    def create_table_request(self, table_name: str) -> dict[str, Any]:
        """Arguments for DynamoDB CreateTable (on-demand billing)."""
        request: dict[str, Any] = {
            "TableName": table_name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": self.key_schema(),
            "AttributeDefinitions": self.attribute_definitions(),
        }
        if self.indexes:
            request["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index.name,
                    "KeySchema": _key_schema(index.partition_key, index.sort_key),
                    "Projection": {"ProjectionType": "ALL"},
                }
                for index in self.indexes
            ]
        return request


def _key_schema(partition_key: str, sort_key: str | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": partition_key, "KeyType": "HASH"}]
    if sort_key:
        schema.append({"AttributeName": sort_key, "KeyType": "RANGE"})
    return schema


RUNS = TableDefinition(
    logical_name="runs",
    partition_key=RunAttr.ID,
    sort_key=None,
    attribute_types={
        RunAttr.ID: "S",
        RunAttr.ENTITY: "S",
        RunAttr.STATUS: "S",
        RunAttr.USERNAME: "S",
        RunAttr.STARTED_AT: "S",
    },
    indexes=(
        Index(RUNS_BY_START_INDEX, RunAttr.ENTITY, RunAttr.STARTED_AT),
        Index(RUNS_BY_STATUS_INDEX, RunAttr.STATUS, RunAttr.STARTED_AT),
        Index(RUNS_BY_USER_INDEX, RunAttr.USERNAME, RunAttr.STARTED_AT),
    ),
    ttl_attribute=TTL_ATTRIBUTE,
)

READINGS = TableDefinition(
    logical_name="readings",
    partition_key="pk",
    sort_key="sk",
    attribute_types={"pk": "S", "sk": "S"},
    ttl_attribute=TTL_ATTRIBUTE,
)

ALL_TABLES: tuple[TableDefinition, ...] = (RUNS, READINGS)
