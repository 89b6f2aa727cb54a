"""The till API's HTTP layer (FastAPI), wired in one place: ``create_app(settings)``.

Each route decodes the request, checks the key, calls one read or write of
``streams.api.reads`` / ``streams.api.writes`` and shapes the answer; no
ledger rule lives here. Every error is JSON ``{"error": code, "message": ...}``.
The lifespan opens the ledger (no account cache: workers write the
accounts), a small PostgreSQL pool for the keys, and the aiokafka producer,
and closes them on the way out. Nothing here logs a key, a header or a body.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.calendar import parse_timestamp
from streams.api import openapi
from streams.api.console.routes import install_console
from streams.api.console.web import close_console
from streams.api.keys import CRM_SCOPE, READ_SCOPE, ApiKey, KeyStore, key_digest
from streams.api.limits import RateLimiter
from streams.api.metrics import ApiMetrics
from streams.api.fresh_accounts import NewerFacts
from streams.api.reads import LedgerReads
from streams.api.wakeups import FactWakeups
from streams.api.writes import EventIdConflict, EventWriter
from streams.kafka_security import aiokafka_options
from streams.settings import Settings
from streams.validation import MESSAGE_BYTES_MAX, InvalidInput, decode_inbound

API_TITLE = "Loyalty ledger till API"
API_VERSION = "1"
BEARER_PREFIX = "Bearer "
HISTORY_FACTS_DEFAULT = 100
HISTORY_FACTS_MAX = 1000
VERSION_MAX = 2**63 - 1  # the event store's originator_version is a bigint
KEY_CACHE_ENTRIES_MAX = 10_000
PRODUCE_REQUEST_TIMEOUT_MS = 5000
QUOTE_EVENT_ID = "quote"
UNMATCHED_ROUTE = "unmatched"
SERVER_ERROR_STATUS = 500
JSON_MEDIA_TYPE = "application/json"
VERSION_CHECK_ACCOUNTS_MAX = 500  # lookups sharing one "any newer fact?" query
LEDGER_POOL_CONNECTIONS_MAX = 15  # eventsourcing's PostgreSQL pool: 5 connections + 10 overflow


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


@dataclass
class Parts:
    """Everything a request needs, opened by the lifespan."""

    settings: Settings
    reads: LedgerReads
    keys: KeyStore
    writer: EventWriter
    limiter: RateLimiter
    metrics: ApiMetrics
    key_cache: dict[str, tuple[ApiKey, float]]
    pool: ConnectionPool | None = None  # the keys' pool; the console's tables use it too


async def _open_parts(settings: Settings,
                      metrics: ApiMetrics) -> tuple[Parts, ConnectionPool, AIOKafkaProducer]:
    from streams.worker import open_ledger  # here, not at import: it loads faust, which only serving needs

    ledger = await asyncio.to_thread(open_ledger, replace(settings, account_cache_accounts_max=0))
    recorder = ledger.recorder
    probe_pool = AsyncConnectionPool(settings.database_url, min_size=1, max_size=1,
                                     kwargs={"autocommit": True}, open=False)
    await probe_pool.open(wait=True)
    reads = LedgerReads(ledger, settings.api_read_threads, settings.api_account_cache_accounts_max,
                        NewerFacts(probe_pool, recorder.datastore.schema, recorder.events_table_name,
                                   VERSION_CHECK_ACCOUNTS_MAX))
    pool = ConnectionPool(settings.database_url, min_size=1, max_size=settings.api_read_threads, open=False)
    await asyncio.to_thread(pool.open, True)
    keys = KeyStore(pool)
    await reads.run(keys.ensure_table)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                request_timeout_ms=PRODUCE_REQUEST_TIMEOUT_MS, **aiokafka_options(settings))
    await producer.start()
    wakeups = FactWakeups(settings.database_url, recorder.datastore.schema, recorder.events_table_name,
                          recorder.channel_name, settings.reply_poll_interval_ms)
    wakeups.start()
    writer = EventWriter(reads, producer, settings.events_topic, settings.reply_timeout_ms, wakeups,
                         settings.reply_read_before_wakeup)
    limiter = RateLimiter(settings.api_rate_requests_per_s, settings.api_rate_burst_requests)
    return Parts(settings, reads, keys, writer, limiter, metrics, {}, pool), pool, producer


def create_app(settings: Settings) -> FastAPI:
    """The API for ``settings`` (bootstrap servers and database URL required)."""
    if not 1 <= settings.api_read_threads <= LEDGER_POOL_CONNECTIONS_MAX:
        raise ValueError(f"api_read_threads must be 1 to {LEDGER_POOL_CONNECTIONS_MAX} "
                         f"(the ledger's connection pool); got {settings.api_read_threads}")
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        parts, pool, producer = await _open_parts(settings, metrics)
        app.state.parts = parts
        try:
            yield
        finally:
            await close_console(app)
            await parts.writer.wakeups.stop()
            await parts.reads.newer_facts.pool.close()
            await producer.stop()
            await asyncio.to_thread(pool.close)
            await asyncio.to_thread(parts.reads.close)

    app = FastAPI(title=API_TITLE, version=API_VERSION, lifespan=lifespan, docs_url=None, redoc_url=None)
    _install_errors(app)
    _install_metrics(app, metrics)
    _install_routes(app)
    install_console(app)
    app.openapi = lambda: _openapi_document(app)
    return app


def _openapi_document(app: FastAPI) -> dict:
    if app.openapi_schema is None:
        document = get_openapi(title=API_TITLE, version=API_VERSION, routes=app.routes)
        app.openapi_schema = openapi.with_schemas(document)
    return app.openapi_schema


# ----------------------------------------------------------------- errors


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if error.status_code == 404 else "http_error"
        return error_response(error.status_code, code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'/'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
                             for problem in error.errors())
        return error_response(422, "invalid_request", problems)


def _install_metrics(app: FastAPI, metrics: ApiMetrics) -> None:
    app.add_middleware(RequestCounter, metrics=metrics)


class RequestCounter:
    """ASGI middleware counting every answer by route template and status (a plain ASGI
    wrapper: Starlette's ``BaseHTTPMiddleware`` costs a task and a stream per request)."""

    def __init__(self, app, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [SERVER_ERROR_STATUS]  # an exception escaping the app becomes a 500 outside

        async def counting_send(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            self.metrics.requests.labels(route, str(status[0])).inc()


def json_answer(document: dict, status: int = 200, headers: dict | None = None) -> Response:
    """``document`` as JSON with orjson (FastAPI's encoder walks every value in Python first);
    the standard encoder for what orjson refuses (an integer past 64 bits)."""
    try:
        body = orjson.dumps(document)
    except orjson.JSONEncodeError:
        return JSONResponse(document, status_code=status, headers=headers)
    return Response(body, status_code=status, headers=headers, media_type=JSON_MEDIA_TYPE)


# ------------------------------------------------------------------- keys


async def authenticate(request: Request) -> ApiKey:
    """The request's key, rate-limited; ApiError 401 or 429 otherwise."""
    parts: Parts = request.app.state.parts
    header = request.headers.get("authorization", "")
    if not header.startswith(BEARER_PREFIX):
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <key>")
    key = await _known_key(parts, header[len(BEARER_PREFIX):].strip())
    if key is None:
        raise ApiError(401, "unauthorized", "unknown or revoked key")
    retry_after_s = parts.limiter.retry_after_s(key.key_id)
    if retry_after_s:
        raise ApiError(429, "rate_limited", f"more than {parts.settings.api_rate_requests_per_s} "
                       "requests/s for this key", {"Retry-After": str(retry_after_s)})
    return key


async def _known_key(parts: Parts, presented: str) -> ApiKey | None:
    digest = key_digest(presented)
    cached = parts.key_cache.get(digest)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    key = await parts.reads.run(parts.keys.authenticate, presented)
    if key is not None:
        if len(parts.key_cache) >= KEY_CACHE_ENTRIES_MAX:
            parts.key_cache.clear()
        parts.key_cache[digest] = (key, time.monotonic() + parts.settings.api_key_cache_ttl_ms / 1000)
    return key


async def reader(request: Request) -> Parts:
    """The parts, for a key with the read scope (kept as ``request.state.api_key``)."""
    key = await authenticate(request)
    if READ_SCOPE not in key.scopes:
        raise ApiError(403, "forbidden", "this key has no read scope")
    request.state.api_key = key
    return request.app.state.parts


def authorize_write(key: ApiKey, event: dict) -> None:
    if not key.may_submit(event["type"]):
        raise ApiError(403, "forbidden", f"this key may not submit {event['type']} events")
    if not key.may_submit_for_store(event.get("store_id")):
        raise ApiError(403, "forbidden", "this key is bound to stores: the event needs one of its store_id")


async def body_of(request: Request) -> bytes:
    """The request body, read no further than one byte past the largest message the ledger takes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > MESSAGE_BYTES_MAX:
            break
    return b"".join(chunks)  # decode_inbound refuses it as too_large when over


def decoded(raw: bytes) -> dict:
    try:
        return decode_inbound(raw)
    except InvalidInput as invalid:
        raise ApiError(422, str(invalid.reason_code), invalid.message) from None


# ----------------------------------------------------------------- routes


def _install_routes(app: FastAPI) -> None:
    _install_member_routes(app)
    _install_event_routes(app)
    _install_service_routes(app)


def _install_member_routes(app: FastAPI) -> None:
    @app.get("/v1/members/{member_id}")
    async def member(member_id: str, request: Request, as_of: str | None = None) -> Response:
        parts = await reader(request)
        moment = _as_of(as_of)
        with_profile = CRM_SCOPE in request.state.api_key.scopes  # section 13: authenticated once
        document = (await parts.reads.current_member(member_id, with_profile) if moment is None
                    else await parts.reads.run(parts.reads.member, member_id, moment, with_profile))
        if document is None:
            raise ApiError(404, "unknown_member", "the ledger has no fact of this member"
                           + (" at or before as_of" if moment else ""))
        return json_answer(document)

    @app.get("/v1/members/{member_id}/history")
    async def history(member_id: str, request: Request, after_version: int = Query(0, ge=0, le=VERSION_MAX),
                      limit: int = Query(HISTORY_FACTS_DEFAULT, ge=1, le=HISTORY_FACTS_MAX)) -> Response:
        parts = await reader(request)
        facts = await parts.reads.run(parts.reads.history, member_id, after_version, limit)
        if facts is None:
            raise ApiError(404, "unknown_member", "the ledger has no fact of this member")
        return json_answer({"member_id": member_id, "facts": facts})

    @app.post("/v1/quote")
    async def quote(request: Request) -> Response:
        parts = await reader(request)
        purchase = decoded(_with_quote_event_id(await body_of(request)))
        return json_answer(await parts.reads.run(parts.reads.quote, purchase))


def _as_of(text: str | None):
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except (ValueError, OverflowError):  # not RFC 3339 with an offset, or out of datetime's range
        raise ApiError(422, "invalid_request", "as_of: an RFC 3339 time with an offset") from None


def _with_quote_event_id(body: bytes) -> bytes:
    """The quote body as a purchase event (a placeholder id), for the purchase schema's check."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # decode_inbound names the problem
    if isinstance(document, dict) and "event_id" in document:
        raise ApiError(422, "schema", "/event_id: a quote has no event_id (nothing is written)")
    if isinstance(document, dict) and document.get("type") != "purchase":
        raise ApiError(422, "schema", "/type: a quote is for a purchase")
    return orjson.dumps({**document, "event_id": QUOTE_EVENT_ID}) if isinstance(document, dict) else body


def _install_event_routes(app: FastAPI) -> None:
    @app.post("/v1/events")
    async def post_event(request: Request) -> Response:
        started_s = time.monotonic()
        key = await authenticate(request)
        raw = await body_of(request)
        event = decoded(raw)
        authorize_write(key, event)
        parts: Parts = request.app.state.parts
        reply = await _submit(parts, event, raw)
        parts.metrics.reply_latency.observe(time.monotonic() - started_s)
        timing = {"Server-Timing": reply.stages.server_timing()} if reply.stages else {}
        if reply.timed_out:
            parts.metrics.replies_timed_out.inc()
            location = f"/v1/events/{event['event_id']}?member_id={event['member_id']}"
            return json_answer({"event_id": event["event_id"], "member_id": event["member_id"],
                                "status": "accepted", "location": location},
                               status=202, headers={"Location": location} | timing)
        return json_answer(reply.outcome, headers=timing)

    @app.get("/v1/events/{event_id}")
    async def event_outcome(event_id: str, request: Request, member_id: str = Query(...)) -> Response:
        parts = await reader(request)
        outcome = await parts.reads.run(parts.reads.outcome_of, member_id, event_id)
        if outcome is None:
            raise ApiError(404, "no_outcome", "the ledger has no outcome of this event for this member (yet)")
        return json_answer(outcome)


async def _submit(parts: Parts, event: dict, raw: bytes):
    try:
        return await parts.writer.submit(event, raw)
    except EventIdConflict as conflict:
        raise ApiError(409, "event_id_conflict", str(conflict)) from None
    except KafkaError as error:
        raise ApiError(503, "broker_unavailable", f"the event was not produced: {type(error).__name__}",
                       {"Retry-After": "1"}) from None


def _install_service_routes(app: FastAPI) -> None:
    @app.get("/healthz")
    async def healthz() -> Response:
        return json_answer({"status": "ok"})

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        parts: Parts = request.app.state.parts
        return Response(parts.metrics.exposition(), media_type="text/plain; version=0.0.4")
