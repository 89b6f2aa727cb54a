"""The console's HTTP plumbing: the console's parts, sessions from cookies, forms, CSRF, pages.

- ``ConsoleParts``: the session store, the dead-letter index, the read
  models and the Kafka end offsets, opened at the first console request
  (``console_parts``) on the API's own pool and ledger, closed with the API.
- ``signed_in``: the request's session from its cookie (a live key, not
  rate-limited), else ``SignInNeeded`` (a redirect to the sign-in page);
  ``require_scope``: 403 without the scope.
- ``form_of``: a URL-encoded form body read no further than
  ``FORM_BYTES_MAX``, its CSRF token checked against the session's.
- ``page``: a template rendered with autoescaping (Jinja2's ``select_autoescape``
  for every ``.html``) and the headers every page carries: a Content
  Security Policy without scripts, no framing, no caching, no referrer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, time as day_time, timezone
from pathlib import Path
from urllib.parse import parse_qs

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from projections.runner import ReadModels, open_read_models
from streams.api.console.dead_letters import DeadLetterIndex
from streams.api.console.overview import EndOffsets, Throughput
from streams.api.console.sessions import Session, SessionStore, new_token, tokens_match
from streams.validation import MESSAGE_BYTES_MAX

PREFIX = "/console"
SESSION_COOKIE = "loyalty_console_session"
SIGN_IN_COOKIE = "loyalty_console_sign_in"  # the sign-in form's CSRF token (double submit)
FORM_BYTES_MAX = 4 * MESSAGE_BYTES_MAX  # an edited payload URL-encoded, with the form's other fields
TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

TEMPLATES = Environment(loader=FileSystemLoader(TEMPLATES_DIR),
                        autoescape=select_autoescape(["html"], default=True),
                        trim_blocks=True, lstrip_blocks=True)


def _number(value: int | None, absent: str = "-") -> str:
    """An integer with thousands separators, ``absent`` for None (Jinja2 filter ``num``)."""
    return absent if value is None else f"{value:,}"


def _compact(value: object) -> str:
    """A fact field as a person reads it: text as is, anything else as compact JSON (filter ``compact``)."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


TEMPLATES.filters["num"] = _number
TEMPLATES.filters["compact"] = _compact


class ConsoleError(Exception):
    """A page refused: its status and a sentence for the operator."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class SignInNeeded(Exception):
    """No live session: the console answers with the sign-in page."""


@dataclass
class ConsoleParts:
    sessions: SessionStore
    dead_letters: DeadLetterIndex
    end_offsets: EndOffsets
    throughput: Throughput
    models: ReadModels | None = None


async def console_parts(request: Request):
    """The API's parts and the console's (opened at the first console request), as a pair."""
    parts = request.app.state.parts
    state = request.app.state
    async with state.console_lock:
        if getattr(state, "console", None) is None:
            sessions = SessionStore(parts.pool)
            index = DeadLetterIndex(parts.pool, parts.reads.ledger.fact_log)
            await parts.reads.run(sessions.ensure_table)
            await parts.reads.run(index.ensure_tables)
            state.console = ConsoleParts(sessions, index, EndOffsets(parts.settings), Throughput())
    return parts, state.console


async def read_models(parts, console: ConsoleParts) -> ReadModels:
    if console.models is None:
        console.models = await parts.reads.run(open_read_models, parts.settings.store_env(), None,
                                               parts.reads.ledger.program)
    return console.models


async def close_console(app) -> None:
    console = getattr(app.state, "console", None)
    if console is None:
        return
    await console.end_offsets.close()
    if console.models is not None:
        await asyncio.to_thread(console.models.close)


async def signed_in(request: Request) -> tuple:
    """``(parts, console, session)`` of a signed-in request; SignInNeeded or ConsoleError (429)."""
    parts, console = await console_parts(request)
    token = request.cookies.get(SESSION_COOKIE)
    session = await parts.reads.run(console.sessions.find, token) if token else None
    if session is None:
        raise SignInNeeded()
    if parts.limiter.retry_after_s(session.key.key_id):
        raise ConsoleError(429, "too many requests for this key: wait a second and try again")
    return parts, console, session


def require_scope(session: Session, scope: str) -> None:
    if scope not in session.key.scopes:
        raise ConsoleError(403, f"this key has no {scope} scope")


async def form_of(request: Request) -> dict[str, list[str]]:
    """The URL-encoded form of the request (ConsoleError 413 past ``FORM_BYTES_MAX``)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > FORM_BYTES_MAX:
            raise ConsoleError(413, f"the form is larger than {FORM_BYTES_MAX} bytes")
    try:
        return parse_qs(b"".join(chunks).decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                        max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        raise ConsoleError(400, "the form could not be read") from None


def checked_form(form: dict[str, list[str]], session: Session) -> dict[str, list[str]]:
    """The form when its CSRF token is the session's; ConsoleError 403 otherwise."""
    if not session.csrf_matches(first(form, "csrf")):
        raise ConsoleError(403, "the form's CSRF token is missing or stale: reload the page and try again")
    return form


def sign_in_token_matches(request: Request, form: dict[str, list[str]]) -> bool:
    return tokens_match(request.cookies.get(SIGN_IN_COOKIE, ""), first(form, "csrf"))


def first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(prefix=PREFIX, **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def sign_in_page(request: Request, status: int = 200, message: str | None = None) -> HTMLResponse:
    token = new_token()
    response = page(request, "sign_in.html", status, csrf=token, message=message, session=None)
    set_cookie(request, response, SIGN_IN_COOKIE, token, max_age_s=None)
    return response


def set_cookie(request: Request, response, name: str, value: str, max_age_s: int | None) -> None:
    """HttpOnly, SameSite=Strict, path /console; Secure when the request came over TLS."""
    response.set_cookie(name, value, max_age=max_age_s, path=PREFIX, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def parse_moment(text: str | None, end_of_day: bool = False) -> datetime | None:
    """A form's time: ``YYYY-MM-DD`` (its start, or its end with ``end_of_day``), ``YYYY-MM-DDTHH:MM``
    (a browser's datetime-local) or RFC 3339; without an offset it is UTC. ConsoleError 422 otherwise."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConsoleError(422, "a time is YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)") from None
    if len(text.strip()) == len("YYYY-MM-DD") and end_of_day:
        moment = datetime.combine(moment.date(), day_time.max)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
