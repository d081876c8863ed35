"""IoT Playground API: routes only. Each parses its request and delegates to chalicelib."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

from chalice.app import Chalice, CORSConfig, Rate, Request, Response

from chalicelib import (
    admin_key,
    clock,
    deps,
    grafana,
    http_errors,
    http_surface,
    idempotency,
    logs,
    params,
    public_url,
    retry,
    values,
)
from chalicelib.errors import DomainError, NotFound, ValidationFailed
from chalicelib.ingest import parse_readings, store
from chalicelib.logs import logger
from chalicelib.media_types import app_binary_types
from chalicelib.pagination import decode_token, encode_token, fingerprint
from chalicelib.readings import Cursor, ReadingQuery
from chalicelib.run_shape import RUN_STATUSES, Run, run_view
from chalicelib.schemas import (
    FinishRunRequest,
    ReadingIn,
    ReadingsBody,
    RunParams,
    StartRunRequest,
    convert,
    decode,
    encode,
)
from chalicelib.settings import get_settings
from chalicelib.views import reading_view

if TYPE_CHECKING:
    from chalicelib import run_stats

app = Chalice(app_name="iot-playground")
# Chalice's defaults here; `chalice package`/`deploy` give API Gateway `*/*` as well, so the
# report ZIP reaches browsers as bytes whatever their Accept header (see chalicelib/media_types.py).
app.api.binary_types = app_binary_types()
_cors_config = CORSConfig(
    allow_origin=get_settings().cors_origins[0],
    allow_headers=["X-User", "X-Run-Id", idempotency.HEADER],
    expose_headers=["Content-Disposition", "Retry-After", "X-Export-Complete", "X-Next-Key"],
    max_age=600,
)
# One origin or `*`: the gateway answers preflights. Several: the app does (see http_surface.py).
cors = http_surface.CorsPolicy(get_settings().cors_origins, _cors_config)
app.api.cors = cors.route_config(_cors_config)
# The DynamoDB client and repositories, now: in Lambda's init phase, not in the first request.
deps.init()


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body=encode(body),
        status_code=status_code,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def error_response(error: http_errors.Error) -> Response:
    status, code = http_errors.status_code(error), http_errors.error_code(error)
    if status >= 500:
        logger.error(error.message, extra={"error": code})
    else:
        logger.warning(error.message, extra={"error": code, "status": status})
    return json_response(http_errors.body(error), status, http_errors.headers(error))


def route(
    *paths: str, methods: tuple[str, ...] = ("GET",), status: int = 200, api_key_required: bool = False
) -> Callable[..., Any]:
    """`app.route` for JSON views: a DomainError becomes its JSON answer (http_errors.py), DynamoDB still
    refusing after the SDK's retries a 503 with Retry-After, anything else a logged
    500 without a stack trace in the body. POSTs honour `Idempotency-Key`.
    `api_key_required`: API Gateway asks for the stage's admin key (see admin_key.py)."""

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        def answer(kwargs: dict[str, Any]) -> Response:
            try:
                result = view(**kwargs)
            except DomainError as error:
                return error_response(error)
            except Exception as error:
                if retry.is_transient(error):
                    return error_response(http_errors.dynamodb_busy())
                logger.exception("unhandled error")
                return json_response(http_errors.INTERNAL_ERROR_BODY, 500)
            return result if isinstance(result, Response) else json_response(result, status)

        @functools.wraps(view)
        def handler(**kwargs: Any) -> Response:
            if api_key_required and (refused := admin_key.refusal(_request().headers, get_settings())):
                return error_response(refused)
            key = _request().headers.get(idempotency.HEADER.lower()) if "POST" in methods else None
            if key is None:
                return answer(kwargs)
            return _answer_once(key, lambda: answer(kwargs))

        # POST bodies are JSON only (http_surface refuses the rest with a 415 in this API's format).
        content_types = ["application/json"] if "POST" in methods else ["application/json", "text/plain"]
        for path in paths:
            app.route(
                path, methods=list(methods), content_types=content_types, api_key_required=api_key_required
            )(handler)
            if not cors.gateway_preflight and "OPTIONS" not in app.routes[path]:
                app.route(path, methods=["OPTIONS"], content_types=["*/*"])(preflight)
        return handler

    return register


def preflight(**_: str) -> Response:
    """CORS preflight when CORS_ORIGIN lists several origins; http_surface answers it first."""
    return cors.preflight(_request().headers.get("origin"), app.routes[_request().context["resourcePath"]])


def _answer_once(key: str, answer: Callable[[], Response]) -> Response:
    """A keyed POST: claim the key, answer, and store a 2xx answer for re-sends (see idempotency.py)."""
    request = _request()
    store = deps.idempotency_store()
    try:
        outcome = store.claim(
            route=f"{request.method} {request.context.get('resourcePath', '')}",
            key=idempotency.validated_key(key),
            request_fingerprint=idempotency.fingerprint(
                request.context.get("path", ""),
                request.headers.get("x-user", ""),
                request.headers.get("x-run-id", ""),
                _body(),
            ),
        )
    except DomainError as error:
        return error_response(error)
    except Exception as error:
        if not retry.is_transient(error):
            raise
        return error_response(http_errors.dynamodb_busy())
    if isinstance(outcome, idempotency.StoredResponse):
        return Response(
            body=outcome.body,
            status_code=outcome.status_code,
            headers={"Content-Type": outcome.content_type, idempotency.REPLAYED_HEADER: "true"},
        )
    reset = idempotency.activate(outcome)
    try:
        response = answer()
    finally:
        idempotency.deactivate(reset)
    try:
        if 200 <= response.status_code < 300 and isinstance(response.body, str):
            content_type = str(response.headers.get("Content-Type", "application/json"))
            stored = idempotency.StoredResponse(response.status_code, response.body, content_type)
            store.complete(outcome, stored)
        else:
            store.release(outcome)
    except Exception:
        # The answer stands; a re-send after the lease is recognised by the derived ids.
        logger.exception("could not record the answer to a keyed request")
    return response


# Chalice keeps the request on the app object, which `chalice local`'s threads share;
# each request's own object is kept per context by the middleware below.
_current_request: ContextVar[Request | None] = ContextVar("current_request", default=None)


def _request() -> Request:
    request = _current_request.get() or app.current_request
    assert request is not None  # set by Chalice for every HTTP invocation
    return request


def _query() -> Mapping[str, str]:
    return _request().query_params or {}


def _body() -> bytes:
    raw = _request().raw_body
    return raw.encode() if isinstance(raw, str) else (raw or b"")


# ---- per-invocation context and the run viewer ------------------------------


@app.middleware("http")
def request_context(request: Request, get_response: Callable[[Request], Response]) -> Response:
    """Log context (request id, run, user) and the viewer's base URL, for this request only."""
    logs.bind_request(
        context=request.context,
        headers=request.headers,
        path_params=request.uri_params,
        query=request.query_params,
        lambda_context=request.lambda_context,
    )
    grafana.set_viewer_base(public_url.public_base_url(request.headers, request.context))
    current = _current_request.set(request)
    try:
        return get_response(request)
    finally:
        _current_request.reset(current)
        grafana.set_viewer_base("")
        logs.clear()


# Inside request_context, so refusals are logged with the request's context.
app.register_middleware(http_surface.HttpSurface(app.routes, cors, error_response), "http")


@app.middleware("scheduled")
def invocation_context(event: Any, get_response: Callable[[Any], Any]) -> Any:
    logs.bind_invocation(event.context)
    try:
        return get_response(event)
    finally:
        logs.clear()


# Routes that only some requests take import what they need themselves (viewer, report
# builder): a cold start then loads only what every request needs.


@route("/")
def run_viewer() -> Response:
    from chalicelib import viewer

    return viewer.page_response(_request().context)


@route(public_url.VIEWER_ASSET_ROUTE)
def run_viewer_asset(name: str) -> Response:
    from chalicelib import viewer

    return viewer.asset_response(name)


# ---- health ----------------------------------------------------------------


@route("/api/health")
def health() -> dict[str, str]:
    settings = get_settings()
    return {"status": "ok", "stage": settings.stage, "version": settings.version}


@route("/api/openapi.json")
def openapi_document() -> dict[str, Any]:
    from chalicelib import openapi  # built on the first request for it (chalicelib/openapi.py)

    request = _request()
    return openapi.served(public_url.public_base_url(request.headers, request.context))


# ---- runs ------------------------------------------------------------------


@route("/api/runs/can-start")
def can_start() -> dict[str, Any]:
    settings = get_settings()
    runs = deps.run_repository()
    running = runs.count_running()
    if running >= runs.max_concurrent_runs:
        # A full house may be holding slots for abandoned runs: time those out first.
        _, timed_out = runs.sweep_running(settings.run_grace_seconds)
        if timed_out:
            running = runs.count_running()
    available = max(0, runs.max_concurrent_runs - running)
    return {
        "canStart": available > 0,
        "currentRunning": running,
        "maxAllowed": runs.max_concurrent_runs,
        "available": available,
    }


@route("/api/runs/start", methods=("POST",), status=201)
def start_run() -> Any:
    user = params.user_header(_request().headers)
    request: StartRunRequest = decode(_body(), StartRunRequest)
    fields = (
        request.params
        if request.params is not None
        else {
            "sensorIds": request.sensorIds,
            "duration": request.duration,
            "interval": request.interval,
        }
    )
    run_params = convert({k: v for k, v in fields.items() if v is not None}, RunParams, what="run parameters")
    sensor_ids = [str(s) for s in run_params.sensorIds]
    if len(set(sensor_ids)) != len(sensor_ids):
        raise ValidationFailed("sensorIds must not repeat")
    claim = idempotency.current()
    run = deps.run_repository().start(
        username=user,
        sensor_ids=sensor_ids,
        duration=run_params.duration,
        interval=run_params.interval,
        run_id=claim.derived_id() if claim else None,
    )
    deps.run_status_cache().remember(run)
    logger.info(
        "run started",
        extra={
            "runId": run.id,
            "user": user,
            "status": run.status,
            "sensors": len(sensor_ids),
            "duration": run.duration,
            "interval": run.interval,
        },
    )
    return run_view(run, get_settings())


@route("/api/runs")
def list_runs() -> dict[str, Any]:
    query = _query()
    limit = params.int_param(query, "limit", default=20, low=1, high=100)
    status = params.choice_param(query, "status", RUN_STATUSES, None)
    user = values.user_value(query.get("user"))
    secret = get_settings().token_secret
    scope = fingerprint("runs", status, user)
    start_key = decode_token(params.first_param(query, "nextKey", "lastKey"), scope, secret)
    page = deps.run_repository().page(limit=limit, start_key=start_key, status=status, user=user)
    settings = get_settings()
    items = [run_view(run, settings) for run in page.runs]
    return {"items": items, "count": len(items), "nextKey": encode_token(page.last_key, scope, secret)}


@route("/api/runs/all")
def all_runs() -> list[Any]:
    settings = get_settings()
    # The newest MAX_LISTED_RUNS: the whole history would outgrow a Lambda response.
    return [run_view(run, settings) for run in deps.run_repository().newest()]


@route("/api/runs/running")
def running_runs() -> list[Any]:
    settings = get_settings()
    running, timed_out = deps.run_repository().sweep_running(settings.run_grace_seconds)
    _log_timeouts(timed_out)
    return [run_view(run, settings) for run in running]


@route("/api/runs/interrupt-all", methods=("POST",), api_key_required=True)
def interrupt_all() -> dict[str, Any]:
    runs = deps.run_repository()
    cache = deps.run_status_cache()
    interrupted = 0
    for run in runs.newest(status="RUNNING"):
        try:
            runs.end(run.id, "INTERRUPTED", "interrupted by interrupt-all")
        except DomainError:
            continue  # ended meanwhile by someone else
        cache.forget(run.id)
        interrupted += 1
        logger.info("run interrupted", extra={"runId": run.id, "user": run.username, "status": "INTERRUPTED"})
    return {
        "interrupted": interrupted,
        "message": f"{interrupted} running run(s) interrupted",
        "timestamp": clock.format_ms(clock.now_ms()),
    }


@route("/api/runs/{run_id}")
def get_run(run_id: str) -> Any:
    # One run in any letter case; a lookalike is a 404.
    return run_view(_run_or_404(params.path_run_id(run_id)), get_settings())


@route("/api/runs/{run_id}/finish", methods=("POST",))
def finish_run(run_id: str) -> Any:
    run_id = params.path_run_id(run_id)  # as get_run: same answer for the same id
    raw = _body()
    request = decode(raw, FinishRunRequest) if raw.strip() else FinishRunRequest()
    # ASCII only: str.upper() maps some other letters to ASCII ones (U+017F long s to S).
    status = request.status.upper() if request.status.isascii() else request.status
    if status == "COMPLETED":
        status = "SUCCESS"
    if status not in ("SUCCESS", "FAILED"):
        raise ValidationFailed("status must be SUCCESS, COMPLETED or FAILED")
    message = request.errorMessage if request.errorMessage is not None else request.message
    claim = idempotency.current()
    run = deps.run_repository().end(
        run_id,
        status,
        message if status == "FAILED" else None,
        token=claim.derived_id() if claim else None,
    )
    deps.run_status_cache().forget(run.id)
    logger.info("run finished", extra={"runId": run.id, "user": run.username, "status": status})
    return run_view(run, get_settings())


@route("/api/runs/{run_id}/stats")
def get_run_stats(run_id: str) -> Any:
    run = _path_run(run_id, source="run id")
    folded = _stats(run)
    return folded.fold.view(run, complete=folded.complete, final=folded.final, note=folded.note(run))


def _run_or_404(run_id: str) -> Run:
    run = deps.run_repository().get(run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def _path_run(run_id: str, *, source: str) -> Run:
    """The run a path names: a malformed id is a 400 here (bad input), an unknown one a 404."""
    checked = values.run_id_value(run_id, source=source)
    assert checked is not None  # a path segment is never empty
    return _run_or_404(checked)


def _stats(run: Run) -> run_stats.Folded:
    from chalicelib import run_stats

    return deps.run_stats_store().fold(run, settle_ms=run_stats.settle_ms(get_settings()))


# ---- sensor readings -----------------------------------------------------


@route("/api/sensors/data", "/sensors/data", methods=("POST",), status=201)
def post_readings() -> Any:
    request = _request()
    user = params.user_header(request.headers)
    header_run_id = values.run_id_value(request.headers.get("x-run-id"), source="X-Run-Id")
    body: ReadingIn | list[ReadingIn] = decode(_body(), ReadingsBody)
    claim = idempotency.current()
    ingested = parse_readings(
        body,
        user=user,
        header_run_id=header_run_id,
        # A re-send of a keyed request stamps its readings as the first attempt did.
        received_ms=claim.started_ms if claim else clock.now_ms(),
        request_identity=claim.derived_id() if claim else None,
    )
    stored = store(ingested, deps.reading_repository(), deps.run_status_cache())
    if ingested.single:
        return reading_view(ingested.readings[0])
    return {"ingested": stored}


@route("/api/sensors/data", "/sensors/data")
def get_readings() -> dict[str, Any]:
    query = _query()
    reading_query = ReadingQuery(
        run_id=values.run_id_value(query.get("runId"), source="runId"),
        sensor_id=values.sensor_id_value(query.get("sensorId")),
        type=values.type_value(query.get("type")),
        from_ms=values.timestamp_value(params.first_param(query, "from", "startDate"), name="from"),
        to_ms=values.timestamp_value(params.first_param(query, "to", "endDate"), name="to"),
        order="asc" if params.choice_param(query, "order", ("asc", "desc"), "desc") == "asc" else "desc",
    )
    values.check_time_range(reading_query.from_ms, reading_query.to_ms)
    if reading_query.run_id is None and reading_query.sensor_id is None:
        raise ValidationFailed("runId or sensorId is required")
    limit = params.int_param(query, "limit", default=100, low=1, high=1000)
    secret = get_settings().token_secret
    scope = fingerprint(
        "readings",
        reading_query.run_id,
        reading_query.sensor_id,
        reading_query.type,
        reading_query.from_ms,
        reading_query.to_ms,
        reading_query.order,
    )
    start_key = decode_token(params.first_param(query, "nextKey", "lastKey"), scope, secret, Cursor)
    page = deps.reading_repository().query(
        reading_query,
        limit=limit,
        start_key=start_key,
        runs=deps.run_repository().runs_with_sensor,
        span_ms=_reading_span(reading_query),
    )
    items = [reading_view(r) for r in page.readings]
    return {"items": items, "count": len(items), "nextKey": encode_token(page.last_key, scope, secret)}


def _reading_span(reading_query: ReadingQuery) -> int | None:
    """How far past a page a newest-first query of one run must read (see chalicelib/readings.py)."""
    if reading_query.run_id is None or reading_query.order == "asc":
        return None  # oldest first needs no span; a sensor walk finds each run's span itself
    run = deps.run_repository().get(reading_query.run_id, consistent=False)
    return run.reading_span_ms if run is not None else None


@route("/api/sensors/series")
def sensor_series() -> Any:
    from chalicelib import series
    from chalicelib.schemas import DEFAULT_READING_TYPE

    query = _query()
    run_id = values.run_id_value(query.get("runId"), source="runId")
    sensor_id = values.sensor_id_value(query.get("sensorId"))
    # One type per series: temperature and humidity in one average mean nothing.
    kind = values.type_value(query.get("type")) or DEFAULT_READING_TYPE
    interval = query.get("interval") or series.DEFAULT_INTERVAL
    series.parse_interval(interval)
    agg = params.choice_param(query, "agg", series.AGGREGATES, series.DEFAULT_AGGREGATE)
    from_ms = values.timestamp_value(query.get("from"), name="from")
    to_ms = values.timestamp_value(query.get("to"), name="to")
    values.check_time_range(from_ms, to_ms)
    if run_id is None or sensor_id is None:
        raise ValidationFailed("runId and sensorId are required")
    run = _run_or_404(run_id)
    from_ms, to_ms = series.default_range(run, clock.now_ms(), from_ms, to_ms)
    return series.read_series(
        deps.reading_repository(),
        run_id=run_id,
        sensor_id=sensor_id,
        type=kind,
        from_ms=from_ms,
        to_ms=to_ms,
        interval=interval,
        agg=cast("series.Aggregate", agg),  # one of series.AGGREGATES
    )


@route("/api/sensors/latest")
def latest_readings() -> Any:
    run_id = values.run_id_value(_query().get("runId"), source="runId")
    if run_id is None:
        raise ValidationFailed("runId is required")
    run = _run_or_404(run_id)
    folded = _stats(run)
    if folded.complete:
        return folded.fold.latest_view(run, complete=True, final=folded.final, note=folded.note(run))
    # The fold holds the oldest readings only: the newest ones say what is latest.
    from chalicelib import run_stats

    newer, every_reading = deps.run_stats_store().newest(run)
    note = "the newest readings, read newest first" + (
        ""
        if every_reading
        else f" (at most {run_stats.MAX_STATS_QUERY_PAGES * run_stats.STATS_PAGE_LIMIT});"
        " a series absent from them shows its last reading among the oldest"
    )
    return folded.fold.latest_view(run, complete=every_reading, final=folded.final, note=note, newer=newer)


# ---- reports -----------------------------------------------------------------


@route("/api/runs/{run_id}/readings.csv")
def run_readings_csv(run_id: str) -> Response:
    """Every reading of the run, oldest first, as CSV: as far as one request's budget goes
    (reports.py), then `X-Next-Key` says where the next request goes on."""
    from chalicelib import reports

    run = _path_run(run_id, source="the run id in the path")
    secret = get_settings().token_secret
    scope = fingerprint("readings.csv", run.id)
    start_key = decode_token(_query().get("nextKey"), scope, secret, Cursor)
    text, copied = reports.readings_csv(deps.reading_repository(), run.id, reports.Budget(), start_key)
    headers = {"X-Export-Complete": str(copied.complete).lower()}
    if (next_key := encode_token(copied.next_key, scope, secret)) is not None:
        headers["X-Next-Key"] = next_key
    return reports.download(
        text, content_type=reports.CSV_TYPE, filename=f"readings-{run.id}.csv", headers=headers
    )


@route("/api/reports/download")
def download_report() -> Response:
    from chalicelib import reports

    run_id = values.run_id_value(_query().get("runId"), source="runId")
    runs = reports.finished_runs(deps.run_repository(), get_settings().report_runs)
    body = reports.build_zip(deps.reading_repository(), runs, reports.Budget(), run_id)
    return reports.download(body, content_type=reports.ZIP_TYPE, filename=reports.report_filename())


# ---- routes the frontend calls that belong to other services --------------


@route("/infra/latest-deployment")
def latest_deployment() -> dict[str, Any]:
    # The infrastructure manager answers this. The frontend polls it every 5 s and reads this
    # 200 as "no deployment", like a 404, which browsers would log as a console error each time.
    return {"success": False, "message": "no deployment information on this API"}


# ---- scheduled -------------------------------------------------------------


@app.schedule(Rate(1, unit=Rate.MINUTES))
def time_out_orphaned_runs(event: Any) -> dict[str, int]:
    settings = get_settings()
    _, timed_out = deps.run_repository().sweep_running(settings.run_grace_seconds)
    _log_timeouts(timed_out)
    return {"timedOut": len(timed_out)}


def _log_timeouts(timed_out: list[Any]) -> None:
    cache = deps.run_status_cache()
    for run in timed_out:
        cache.forget(run.id)
        logger.info("run timed out", extra={"runId": run.id, "user": run.username, "status": run.status})
