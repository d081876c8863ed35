"""The DynamoDB tables and the kinds of item each holds: the one definition the repositories,
the local stack, the tests and the deployment templates all use. On-demand billing; every
index writes each item it carries again, so an index is here only where a list needs it.

Runs (`RUNS`), keyed by `id`; every item says what it is in `kind`:
    run    one simulation run (`runs.py`); the three indexes are sparse, only runs carry
           `startedAt`, and each serves one list (all runs, by status, by user)
    slots  how many runs are RUNNING, in all (`id` "#slots") and per user ("#slots#<user>");
           start and end transactions move them, which is how the run limits hold
    stats  the kept statistics of an ended run (`analytics.py`), `id` "#stats#<runId>"
    checkpoint  how far `iot-playground migrate` has come, `id` "#migration-checkpoint"

Readings (`READINGS`), no index: one plain item per reading (`readings.py`), partition `pk` the
run id, sort key `sk` "<ISO ms time>#<sensorId>#<type>#<digest>", expiring by `expiresAt`.

Idempotency (`IDEMPOTENCY`): Powertools Idempotency's records of requests sent with an
`Idempotency-Key` (`http.py`), expiring by `expiration`.
"""

from __future__ import annotations

import msgspec

KIND = "kind"
RUN_KIND, SLOTS_KIND, STATS_KIND, CHECKPOINT_KIND = "run", "slots", "stats", "checkpoint"
TTL_ATTRIBUTE = "expiresAt"


class Index(msgspec.Struct, frozen=True):
    name: str
    partition_key: str
    sort_key: str


class Table(msgspec.Struct, frozen=True):
    """A table's keys (all strings), indexes and TTL; its name comes from the stage's settings."""

    setting: str  # the environment variable that names it
    partition_key: str
    sort_key: str | None = None
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None


RUNS_BY_START = Index("runs-by-start", KIND, "startedAt")
RUNS_BY_STATUS = Index("runs-by-status", "status", "startedAt")
RUNS_BY_USER = Index("runs-by-user", "username", "startedAt")

RUNS = Table("RUNS_TABLE", "id", indexes=(RUNS_BY_START, RUNS_BY_STATUS, RUNS_BY_USER))
READINGS = Table("READINGS_TABLE", "pk", "sk", ttl_attribute=TTL_ATTRIBUTE)
IDEMPOTENCY = Table("IDEMPOTENCY_TABLE", "id", ttl_attribute="expiration")
TABLES = (RUNS, READINGS, IDEMPOTENCY)
