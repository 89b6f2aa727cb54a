"""The console's routes under ``/console``: each decodes the request, calls one read or action,
and renders one template. ``install_console(app)`` adds them to the till API.

Pages: sign-in and sign-out, Overview, Member (``?member_id=&as_of=``),
Dead letters (list, one, re-drive), Adjust (``admin`` only), Campaigns;
the stylesheet. None of them is in the API's OpenAPI document. Every page needs a signed-in key with the ``read`` scope;
a re-drive needs the scope of the event's type, an adjustment ``admin``.
"""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from streams.api.console import actions
from streams.api.console.campaigns import campaign_rows, campaign_table
from streams.api.console.member_page import VERSION_MAX, member_figures
from streams.api.console.overview import overview_of
from streams.api.console.sessions import SESSION_LIFETIME_S
from streams.api.console.web import (PREFIX, SESSION_COOKIE, STATIC_DIR, ConsoleError, SignInNeeded,
                                     checked_form, console_parts, first, form_of, page, parse_moment,
                                     read_models, require_scope, set_cookie, sign_in_page,
                                     sign_in_token_matches, signed_in)
from streams.api.keys import CRM_SCOPE, READ_SCOPE

ADMIN_SCOPE = "admin"
SEE_OTHER = 303


def install_console(app: FastAPI) -> None:
    app.state.console_lock = asyncio.Lock()
    app.state.console = None
    _install_errors(app)
    _install_sign_in(app)
    _install_pages(app)
    _install_dead_letters(app)
    _install_adjust(app)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ConsoleError)
    async def refused(request: Request, error: ConsoleError) -> Response:
        return page(request, "error.html", error.status, message=error.message, session=None)

    @app.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, error: SignInNeeded) -> Response:
        return RedirectResponse(f"{PREFIX}/sign-in", status_code=SEE_OTHER)


def _install_sign_in(app: FastAPI) -> None:
    @app.get(PREFIX, include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse(f"{PREFIX}/overview", status_code=SEE_OTHER)

    @app.get(f"{PREFIX}/static/console.css", include_in_schema=False)
    async def stylesheet() -> Response:
        return FileResponse(STATIC_DIR / "console.css", media_type="text/css",
                            headers={"Cache-Control": "max-age=3600"})

    @app.get(f"{PREFIX}/sign-in", include_in_schema=False)
    async def sign_in_form(request: Request) -> Response:
        return sign_in_page(request)

    @app.post(f"{PREFIX}/sign-in", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        parts, console = await console_parts(request)
        form = await form_of(request)
        if not sign_in_token_matches(request, form):
            return sign_in_page(request, 403, "the form expired: sign in again")
        key = await parts.reads.run(parts.keys.authenticate, (first(form, "api_key") or "").strip())
        if key is None:
            return sign_in_page(request, 401, "unknown or revoked key")
        token = await parts.reads.run(console.sessions.open, key)
        response = RedirectResponse(f"{PREFIX}/overview", status_code=SEE_OTHER)
        set_cookie(request, response, SESSION_COOKIE, token, SESSION_LIFETIME_S)
        return response

    @app.post(f"{PREFIX}/sign-out", include_in_schema=False)
    async def sign_out(request: Request) -> Response:
        parts, console, session = await signed_in(request)
        checked_form(await form_of(request), session)
        await parts.reads.run(console.sessions.close, request.cookies[SESSION_COOKIE])
        response = RedirectResponse(f"{PREFIX}/sign-in", status_code=SEE_OTHER)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response


def _install_pages(app: FastAPI) -> None:
    @app.get(f"{PREFIX}/overview", include_in_schema=False)
    async def overview(request: Request) -> Response:
        parts, console, session = await signed_in(request)
        require_scope(session, READ_SCOPE)
        shown = await overview_of(parts, console, await read_models(parts, console))
        return page(request, "overview.html", session=session, overview=shown, tab="overview")

    @app.get(f"{PREFIX}/members", include_in_schema=False)
    async def member(request: Request, member_id: str = "", as_of: str = "",
                     after_version: int = Query(0, ge=0, le=VERSION_MAX)) -> Response:
        parts, console, session = await signed_in(request)
        require_scope(session, READ_SCOPE)
        context = {"session": session, "tab": "members", "member_id": member_id, "as_of": as_of}
        if not member_id:
            return page(request, "member.html", **context, document=None)
        shown = await member_figures(parts, member_id, parse_moment(as_of, end_of_day=True), after_version,
                                     with_profile=CRM_SCOPE in session.key.scopes)
        if shown is None:
            return page(request, "member.html", 404, **context, document=None, unknown=True)
        return page(request, "member.html", **context, **shown, may_adjust=ADMIN_SCOPE in session.key.scopes)

    @app.get(f"{PREFIX}/campaigns", include_in_schema=False)
    async def campaigns(request: Request) -> Response:
        parts, console, session = await signed_in(request)
        require_scope(session, READ_SCOPE)
        rows = campaign_table(await parts.reads.run(campaign_rows, parts.pool), parts.reads.ledger.program)
        return page(request, "campaigns.html", session=session, tab="campaigns", rows=rows)


def _install_dead_letters(app: FastAPI) -> None:
    @app.get(f"{PREFIX}/dead-letters", include_in_schema=False)
    async def dead_letters(request: Request, reason: str = "", since: str = "", until: str = "") -> Response:
        parts, console, session = await signed_in(request)
        require_scope(session, READ_SCOPE)
        index = console.dead_letters
        await parts.reads.run(index.catch_up)
        rows = await parts.reads.run(index.list, reason or None, parse_moment(since),
                                     parse_moment(until, end_of_day=True))
        return page(request, "dead_letters.html", session=session, tab="dead-letters", rows=rows,
                    reasons=await parts.reads.run(index.reasons), reason=reason, since=since, until=until,
                    redrives=await parts.reads.run(index.redrives))

    @app.get(f"{PREFIX}/dead-letters/{{dead_letter_id}}", include_in_schema=False)
    async def dead_letter(request: Request, dead_letter_id: str) -> Response:
        parts, console, session = await signed_in(request)
        require_scope(session, READ_SCOPE)
        letters = await parts.reads.run(console.dead_letters.find, [_uuid(dead_letter_id)])
        if not letters:
            raise ConsoleError(404, "no such dead letter")
        return page(request, "dead_letter.html", session=session, tab="dead-letters", letter=letters[0])

    @app.post(f"{PREFIX}/dead-letters/redrive", include_in_schema=False)
    async def redrive(request: Request) -> Response:
        parts, console, session = await signed_in(request)
        require_scope(session, READ_SCOPE)
        form = checked_form(await form_of(request), session)
        letters = await parts.reads.run(console.dead_letters.find, [_uuid(text) for text in form.get("id", [])])
        if not letters:
            raise ConsoleError(422, "choose at least one dead letter to re-drive")
        edited = first(form, "payload")
        if edited is not None and len(letters) != 1:
            raise ConsoleError(422, "an edited payload re-drives one dead letter at a time")
        results = []
        for letter in letters:
            submitted = await actions.redrive(parts.writer, console.dead_letters, parts.reads.run,
                                              session.key, letter,
                                              None if edited is None else edited.encode("utf-8"))
            results.append((letter, submitted))
        return page(request, "redriven.html", session=session, tab="dead-letters", results=results)


def _uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise ConsoleError(404, "no such dead letter") from None


def _install_adjust(app: FastAPI) -> None:
    @app.get(f"{PREFIX}/adjust", include_in_schema=False)
    async def adjust_form(request: Request, member_id: str = "") -> Response:
        parts, console, session = await signed_in(request)
        require_scope(session, ADMIN_SCOPE)
        return _adjust_page(request, parts, session, {"member_id": member_id})

    @app.post(f"{PREFIX}/adjust", include_in_schema=False)
    async def adjust(request: Request) -> Response:
        parts, console, session = await signed_in(request)
        require_scope(session, ADMIN_SCOPE)
        form = {name: values[0] for name, values in checked_form(await form_of(request), session).items()}
        for name in ("event_id", "member_id", "occurred_at", "points", "reason_code"):
            form.setdefault(name, "")
        submitted = await actions.submit(parts.writer, session.key, actions.adjustment_event(form, session.key))
        return _adjust_page(request, parts, session, form, submitted)


def _adjust_page(request: Request, parts, session, form: dict, submitted=None) -> Response:
    fresh = submitted is not None and submitted.result != actions.REFUSED
    values = {"event_id": f"console-adjust-{uuid4()}", "occurred_at": actions.now_text(), "points": "",
              "reason_code": "", "note": ""} | ({} if fresh else form)
    values["member_id"] = form.get("member_id", "")
    status = 422 if submitted is not None and submitted.result == actions.REFUSED else 200
    return page(request, "adjust.html", status, session=session, tab="adjust", form=values,
                reason_codes=parts.reads.ledger.program.adjustment_reason_codes, submitted=submitted)
