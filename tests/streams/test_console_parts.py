"""The console's pure parts, without services: form times, tier progress, a fact's cause and
campaign lines, the session cookie's attributes over TLS, the number filter."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi.responses import Response
from starlette.requests import Request

from ledger.program import load_program
from streams.api.console.member_page import campaign_lines, history_rows, tier_progress_pct
from streams.api.console.web import SESSION_COOKIE, TEMPLATES, ConsoleError, parse_moment, set_cookie

UTC = timezone.utc


def test_form_times_are_utc_and_a_bare_date_can_mean_its_end():
    assert parse_moment("2025-03-14") == datetime(2025, 3, 14, tzinfo=UTC)
    assert parse_moment("2025-03-14", end_of_day=True) == datetime(2025, 3, 14, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_moment("2025-03-14T10:30") == datetime(2025, 3, 14, 10, 30, tzinfo=UTC)
    assert parse_moment("2025-03-14T10:30:00+02:00") == datetime(2025, 3, 14, 8, 30, tzinfo=UTC)
    assert parse_moment("") is None
    with pytest.raises(ConsoleError) as refused:
        parse_moment("yesterday")
    assert refused.value.status == 422


def test_progress_to_the_next_tier_runs_from_the_current_threshold():
    program = load_program(None)  # bronze 0, silver 50 000, gold 200 000, platinum 500 000
    silver_half_way = {"tier": "silver", "next_tier": "gold", "spend_to_next_tier": 75_000}
    assert tier_progress_pct(silver_half_way, program) == 50
    assert tier_progress_pct({"tier": "bronze", "next_tier": "silver", "spend_to_next_tier": 50_000}, program) == 0
    assert tier_progress_pct({"tier": "platinum", "next_tier": None, "spend_to_next_tier": None}, program) is None


def fact(version: int, kind: str, event_id: str, position: str | None = None, **data) -> dict:
    return {"version": version, "type": kind, "clock": "2025-01-01T00:00:00Z", "source_event_id": event_id,
            "source_position": position, "data": data}


def test_history_rows_show_each_facts_cause_and_stop_at_the_as_of_version():
    lines = [{"campaign_id": "spring", "points": 20}]
    facts = [fact(1, "account_opened", "pos-1"),
             fact(2, "points_earned", "pos-1", "events/0/7", points=120, program_version=1, campaign_lines=lines),
             fact(3, "tier_changed", "pos-1", from_tier="bronze"),
             fact(4, "points_earned", "pos-2", "events/0/9", points=5)]
    rows = history_rows(facts, as_of_version=3)
    assert [row["version"] for row in rows] == [1, 2, 3]
    assert [row["source_position"] for row in rows] == ["events/0/7"] * 3  # the outcome's, by event id
    assert rows[1]["program_version"] == 1 and rows[1]["campaign_lines"] == lines
    assert rows[1]["shown"] == {"points": 120} and campaign_lines(facts[3]) == []


@pytest.mark.parametrize("scheme, secure", [("https", True), ("http", False)])
def test_the_session_cookie_is_secure_over_tls_and_always_http_only_and_strict(scheme, secure):
    request = Request({"type": "http", "scheme": scheme, "method": "GET", "path": "/console", "headers": [],
                       "server": ("console.example", 443), "query_string": b""})
    response = Response()
    set_cookie(request, response, SESSION_COOKIE, "token", 60)
    cookie = response.headers["set-cookie"]
    assert ("; Secure" in cookie) is secure
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie


def test_templates_escape_and_numbers_read_well():
    html = TEMPLATES.from_string("{{ value }} {{ 1234567 | num }} {{ none | num('no budget') }}").render(
        value="<script>x</script>", none=None)
    assert html == "&lt;script&gt;x&lt;/script&gt; 1,234,567 no budget"


def test_the_console_stays_out_of_the_till_apis_openapi_document():
    from streams.api.app import create_app
    from streams.settings import Settings

    app = create_app(Settings(bootstrap_servers="unused:9092", database_url="postgresql://unused/db"))
    paths = app.openapi()["paths"]
    assert "/v1/events" in paths and not [path for path in paths if path.startswith("/console")]
    assert {route.path for route in app.routes} >= {"/console/members", "/console/dead-letters/redrive"}


def test_campaigns_list_the_programs_windows_with_the_read_models_figures():
    from types import SimpleNamespace

    from streams.api.console.campaigns import campaign_table

    spring = SimpleNamespace(id="spring", name="Spring double", starts_at="2025-03-01T00:00:00Z",
                             ends_at="2025-04-01T00:00:00Z", budget_points=10_000)
    mugs = SimpleNamespace(id="mugs", name="Mug reward", starts_at="2025-05-01T00:00:00Z",
                           ends_at="2025-06-01T00:00:00Z", budget_points=None)
    program = SimpleNamespace(campaigns=(spring, mugs))
    rows = [{"campaign_id": "spring", "purchases": 3, "members": 2, "points_awarded": 300, "rewards_granted": 0,
             "budget_left": 9_700, "qualifying_spend_minor": 9_000},
            {"campaign_id": "retired", "purchases": 1, "members": 1, "points_awarded": 10, "rewards_granted": 0,
             "budget_left": None, "qualifying_spend_minor": 1_000}]
    table = campaign_table(rows, program)
    assert [(row["campaign_id"], row["name"], row["budget_left"], row["points_awarded"]) for row in table] == [
        ("spring", "Spring double", 9_700, 300), ("mugs", "Mug reward", None, 0), ("retired", None, None, 10)]
    assert table[0]["starts_at"] == "2025-03-01T00:00:00Z"
    assert campaign_table([], program)[0]["budget_left"] == 10_000  # nothing paid out yet
    assert campaign_table(None, SimpleNamespace()) is None and campaign_table([], SimpleNamespace()) == []


def test_kpi_charts_are_the_kpi_commands_charts_as_svg_images_drawn_once_per_rows(monkeypatch):
    import base64

    from projections import kpi_charts
    from streams.api.console import overview

    drawn = []

    def render_chart(name, rows, fmt):
        drawn.append((name, fmt))
        return b"<svg xmlns='http://www.w3.org/2000/svg'><text>" + name.encode() + b"</text></svg>"

    monkeypatch.setattr(kpi_charts, "render_chart", render_chart)
    monkeypatch.setattr(overview, "_CHART_CACHE", {})
    rows = [{"kind": "month", "month": "2025-01", "active_members": 3}]
    images = overview.kpi_chart_images(rows)
    assert [image.title for image in images] == [chart.title for chart in kpi_charts.CHARTS.values()]
    assert all(image.uri.startswith("data:image/svg+xml;base64,") for image in images)
    assert b"<text>members</text>" in base64.b64decode(images[0].uri.split(",", 1)[1])
    assert overview.kpi_chart_images(rows) == images  # the same rows: drawn once
    assert drawn == [(name, "svg") for name in kpi_charts.CHARTS]


def test_the_member_page_shows_a_profile_and_erasure_when_the_document_has_them():
    document = {"member_id": "m-1", "balance": 0, "held": 0, "pending": 0, "debt": 0, "tier": "bronze",
                "discount_pct": 0, "next_tier": None, "lots": [], "holds": [], "version": 3, "clock": "-"}
    page = TEMPLATES.get_template("member.html")
    plain = page.render(prefix="/console", document=document, history=[], member_id="m-1", session=None)
    assert 'id="profile"' not in plain and 'id="erased"' not in plain  # a key without crm: no profile
    crm = page.render(prefix="/console", document={**document, "profile": {"email": "<a@b>"}, "consents": {},
                                                   "erased": False}, history=[], member_id="m-1", session=None)
    assert 'id="profile"' in crm and "&lt;a@b&gt;" in crm
    erased = page.render(prefix="/console", document={**document, "profile": None, "consents": {},
                                                      "erased": True}, history=[], member_id="m-1", session=None)
    assert 'id="erased"' in erased and "<dd>erased</dd>" in erased
