"""The API calls the frontend makes, with the same headers and bodies, over httpx.

Every call that the simulation makes repeatedly returns its latency, so the
tools can report percentiles of what a browser would have waited.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8000"
SUCCESS_MESSAGE = "Simulation completed successfully"
READINGS_PAGE_LIMIT = 1000
# API Gateway's header for API keys; under `make run` the app checks it (chalicelib/admin_key.py).
ADMIN_KEY_HEADER = "x-api-key"


class RequestFailed(Exception):
    """A non-2xx answer (``status`` set) or no answer at all (``status`` None)."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class SlotStatus:
    can_start: bool
    current_running: int
    max_allowed: int
    available: int

    def describe(self) -> str:
        # The frontend's wording when it refuses to start.
        return f"{self.current_running}/{self.max_allowed} simulations running, no slot available"


class RunLimitReached(RequestFailed):
    """No slot: a 409/503 from start, or can-start answering false (``status`` None then)."""

    def __init__(self, slots: SlotStatus, status: int | None = None):
        super().__init__(slots.describe(), status=status)
        self.slots = slots


def _slot_status(body: Any) -> SlotStatus | None:
    if not isinstance(body, dict) or "currentRunning" not in body or "maxAllowed" not in body:
        return None
    running, allowed = int(body["currentRunning"]), int(body["maxAllowed"])
    available = int(body.get("available", max(0, allowed - running)))
    return SlotStatus(bool(body.get("canStart", available > 0)), running, allowed, available)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _failure(response: httpx.Response, what: str) -> RequestFailed:
    body = _json(response)
    # The frontend shows `message` from the JSON error body; so do we.
    detail = body.get("message") if isinstance(body, dict) else None
    text = detail or response.text[:200] or response.reason_phrase
    return RequestFailed(
        f"{what}: HTTP {response.status_code}: {text}", status=response.status_code, body=body
    )


class PlaygroundApi:
    """One connection pool to the API; use as ``async with PlaygroundApi(url) as api``."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 15.0,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    async def __aenter__(self) -> PlaygroundApi:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.aclose()

    async def _send(self, what: str, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, float]:
        started = time.perf_counter()
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise RequestFailed(f"{what}: {type(error).__name__}: {error}") from error
        return response, (time.perf_counter() - started) * 1000

    async def can_start(self) -> SlotStatus:
        response, _ = await self._send("can-start", "GET", "/api/runs/can-start")
        slots = _slot_status(_json(response))
        # The old backend answered 503 with the same fields when full; the frontend copes, so do we.
        if slots is not None and (response.is_success or response.status_code == 503):
            return slots
        raise _failure(response, "can-start")

    async def start_run(self, *, user: str, sensor_ids: list[str], duration: int, interval: int) -> str:
        response, _ = await self._send(
            "start run",
            "POST",
            "/api/runs/start",
            headers={"Content-Type": "application/json", "X-User": user},
            json={"sensorIds": sensor_ids, "duration": duration, "interval": interval},
        )
        body = _json(response)
        if response.status_code in (409, 503):
            slots = _slot_status(body)
            if slots is not None:
                raise RunLimitReached(slots, response.status_code)
        if not response.is_success:
            raise _failure(response, "start run")
        run_id = (body or {}).get("runId") or (body or {}).get("id")
        if not run_id:
            raise RequestFailed("start run: the answer has no runId", status=response.status_code, body=body)
        return str(run_id)

    async def post_readings(
        self, *, user: str, run_id: str, body: dict[str, Any] | list[dict[str, Any]]
    ) -> float:
        """One reading (object) or a batch (array); returns the latency in milliseconds."""
        response, latency_ms = await self._send(
            "post reading",
            "POST",
            "/api/sensors/data",
            headers={"Content-Type": "application/json", "X-User": user, "X-Run-Id": run_id},
            json=body,
        )
        if not response.is_success:
            raise _failure(response, "post reading")
        return latency_ms

    async def finish_run(self, run_id: str, *, status: str, message: str) -> dict[str, Any]:
        # Like the frontend: no X-User here (its preflight asks only for content-type).
        response, _ = await self._send(
            "finish run",
            "POST",
            f"/api/runs/{run_id}/finish",
            headers={"Content-Type": "application/json"},
            json={"status": status, "message": message},
        )
        if not response.is_success:
            raise _failure(response, "finish run")
        body = _json(response)
        return body if isinstance(body, dict) else {}

    async def interrupt_all(self, *, admin_key: str) -> dict[str, Any]:
        """Interrupt every RUNNING run: the one route that needs the stage's admin API key."""
        response, _ = await self._send(
            "interrupt all",
            "POST",
            "/api/runs/interrupt-all",
            headers={"Content-Type": "application/json", ADMIN_KEY_HEADER: admin_key},
        )
        if not response.is_success:
            raise _failure(response, "interrupt all")
        body = _json(response)
        return body if isinstance(body, dict) else {}

    async def get_run(self, run_id: str) -> dict[str, Any]:
        response, _ = await self._send("get run", "GET", f"/api/runs/{run_id}")
        if not response.is_success:
            raise _failure(response, "get run")
        body = _json(response)
        return body if isinstance(body, dict) else {}

    async def run_readings(
        self, run_id: str, *, page_limit: int = READINGS_PAGE_LIMIT
    ) -> list[dict[str, Any]]:
        """Every stored reading of a run, following `nextKey` to the last page."""
        readings: list[dict[str, Any]] = []
        next_key: str | None = None
        while True:
            query: dict[str, str | int] = {"runId": run_id, "limit": page_limit, "order": "asc"}
            if next_key:
                query["nextKey"] = next_key
            response, _ = await self._send("read readings", "GET", "/api/sensors/data", params=query)
            if not response.is_success:
                raise _failure(response, "read readings")
            page = _json(response) or {}
            readings.extend(page.get("items") or [])
            next_key = page.get("nextKey")
            if not next_key:
                return readings
