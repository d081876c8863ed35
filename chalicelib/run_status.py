"""Brief in-container memory of run states, so readings cost no extra read.

A reading for a run is accepted only while the run is RUNNING. Looking that up
on every reading would double the hot path's DynamoDB traffic, so the answer is
kept for `ttl_seconds`. A run ended by this container is forgotten at once;
one ended elsewhere is noticed within `ttl_seconds` (RUN_STATUS_CACHE_SECONDS).
A run past its deadline is refused, and timed out, without waiting for the sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from chalicelib import clock
from chalicelib.errors import NotFound, RunNotRunning
from chalicelib.logs import logger
from chalicelib.run_shape import RUNNING, Run
from chalicelib.runs import RunRepository
from chalicelib.schemas import RUN_ID_RE

# Bounds memory if a client sprays random run ids.
_MAX_ENTRIES = 10_000


@dataclass(slots=True)
class _Entry:
    run: Run | None
    expires_at: float


class RunStatusCache:
    def __init__(
        self,
        runs: RunRepository,
        *,
        ttl_seconds: float,
        grace_seconds: int,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._runs = runs
        self._ttl = ttl_seconds
        self._grace = grace_seconds
        self._monotonic = monotonic  # seconds; injectable so tests can step past the TTL
        self._entries: dict[str, _Entry] = {}

    def require_running(self, run_id: str) -> Run:
        """The run if it accepts readings; NotFound or RunNotRunning otherwise."""
        run = self._lookup(run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        if run.status == RUNNING and run.is_overdue(self._grace, clock.now_ms()):
            _, timed_out = self._runs.end_overdue([run], self._grace)
            if timed_out:
                run = timed_out[0]
                logger.info(
                    "run timed out", extra={"runId": run.id, "user": run.username, "status": run.status}
                )
            else:
                run = self._runs.get(run_id) or run
            self.remember(run)
        if run.status != RUNNING:
            raise RunNotRunning(
                f"run {run_id} is {run.status}: it no longer accepts readings",
                extra={"status": run.status},
            )
        return run

    def widen_reading_span(self, run: Run, span_ms: int) -> None:
        """Record a wider chunk span for the run (a few times per run at most: spans are levels)."""
        self._runs.widen_reading_span(run.id, span_ms)
        self.remember(replace(run, reading_span_ms=span_ms))

    def remember(self, run: Run) -> None:
        self._store(run.id, run)

    def _store(self, run_id: str, run: Run | None) -> None:
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[run_id] = _Entry(run, self._monotonic() + self._ttl)

    def forget(self, run_id: str) -> None:
        self._entries.pop(run_id, None)

    def _lookup(self, run_id: str) -> Run | None:
        entry = self._entries.get(run_id)
        if entry is not None and entry.expires_at > self._monotonic():
            return entry.run
        if not RUN_ID_RE.match(run_id):
            return None
        # Consistent: the first reading may arrive milliseconds after the run was created.
        run = self._runs.get(run_id)
        self._store(run_id, run)
        return run
