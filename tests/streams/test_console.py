"""The operator console over HTTP (no browser): sessions, CSRF, scopes, escaping, re-drives.

A ``loyalty api`` process with a worker on the embedded broker and
PostgreSQL (``tests/support/api.py``). The browser stories are in
``test_console_browser.py``; these check what a browser hides: the cookie's
attributes, the refusals (401, 403, CSRF), the headers every page carries
and the re-drive records.
"""

from __future__ import annotations

import base64
import hashlib
import re
import signal
import uuid
from xml.etree import ElementTree

import httpx
import orjson
import pytest

from projections.kpi_charts import CHARTS
from streams.api.keys import key_store
from tests.support import builders as b
from tests.support import member_builders as mb
from tests.support.api import API_STOP_TIMEOUT_S
from tests.support.console import (console_client, console_stack, csrf_of, produce_raw, sign_in,
                                   wait_for_dead_letter)

DEAD_LETTER_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, embedded_pg, tmp_path_factory):
    with console_stack(kafka_bootstrap, embedded_pg, tmp_path_factory.mktemp("console")) as stack:
        yield stack


@pytest.fixture(scope="module")
def admin(stack):
    client = console_client(stack, stack.key())
    yield client
    client.close()


def member() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def test_sign_in_sets_a_session_cookie_that_is_not_the_key(stack):
    key = stack.key(["read"])
    with httpx.Client(base_url=stack.url) as client:
        assert client.get("/console/overview").status_code == 303  # to the sign-in page
        answer = sign_in(client, key)
        assert answer.status_code == 303
        cookie = next(value for name, value in answer.headers.multi_items()
                      if name == "set-cookie" and value.startswith("loyalty_console_session="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # plain HTTP here; over TLS it is Secure
        assert key not in cookie and key.split("_", 2)[2] not in cookie
        overview = client.get("/console/overview")
        assert overview.status_code == 200 and "Overview" in overview.text
        assert "script-src" not in overview.headers["content-security-policy"]  # default-src 'none'
        assert overview.headers["x-frame-options"] == "DENY"


def test_a_wrong_key_or_a_missing_csrf_token_is_refused(stack):
    with httpx.Client(base_url=stack.url) as client:
        assert sign_in(client, "lk_000000000000_nope").status_code == 401
        fresh = httpx.Client(base_url=stack.url)  # no sign-in cookie: the form's token matches nothing
        assert fresh.post("/console/sign-in", data={"csrf": "x", "api_key": stack.key()}).status_code == 403


def test_forms_without_the_session_csrf_token_are_refused(stack, admin):
    m = member()
    for token in ("", "forged"):
        answer = admin.post("/console/adjust", data={"csrf": token, "member_id": m, "points": "5",
                                                     "reason_code": "goodwill", "event_id": f"e-{m}",
                                                     "occurred_at": "2025-01-01T00:00:00Z"})
        assert answer.status_code == 403 and "CSRF" in answer.text


def test_a_revoked_key_ends_its_session_and_sign_out_ends_it_too(stack):
    key = stack.key(["read"])
    client = console_client(stack, key)
    assert client.get("/console/campaigns").status_code == 200
    with key_store(stack.settings.database_url) as keys:
        keys.revoke(key.split("_")[1])
    assert client.get("/console/campaigns").status_code == 303
    other = console_client(stack, stack.key(["read"]))
    page = other.get("/console/overview")
    assert other.post("/console/sign-out", data={"csrf": csrf_of(page.text)}).status_code == 303
    assert other.get("/console/overview").status_code == 303


def test_a_key_without_admin_can_neither_see_nor_post_the_adjust_form(stack):
    client = console_client(stack, stack.key(["read", "earn"]))
    overview = client.get("/console/overview")
    assert "/console/adjust" not in overview.text
    assert client.get("/console/adjust").status_code == 403
    answer = client.post("/console/adjust", data={"csrf": csrf_of(overview.text), "member_id": member(),
                                                  "points": "5", "reason_code": "goodwill"})
    assert answer.status_code == 403


def test_a_hostile_member_id_is_shown_as_text(stack, admin):
    hostile = '<script>alert("x")</script>&<b>'
    page = admin.get("/console/members", params={"member_id": hostile})
    assert page.status_code == 404
    assert hostile not in page.text and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&lt;b&gt;" in page.text


def test_an_adjustment_round_trip_and_a_refused_one(stack, admin):
    m = member()
    with stack.client(stack.key()) as till:
        assert till.post("/v1/events", json=b.purchase(m, "2025-03-01T10:00:00Z", 10000)).status_code == 200
    form = admin.get("/console/adjust", params={"member_id": m}).text
    fields = {"csrf": csrf_of(form), "event_id": f"console-test-{m}", "member_id": m, "points": "-30",
              "reason_code": "correction", "note": "double scan", "occurred_at": "2025-03-02T00:00:00Z"}
    answer = admin.post("/console/adjust", data=fields)
    assert answer.status_code == 200 and "points_adjusted" in answer.text
    assert 'id="result-balance">70<' in answer.text
    again = admin.post("/console/adjust", data=fields)  # a second click: the same event, its outcome
    assert 'id="result-balance">70<' in again.text
    refused = admin.post("/console/adjust", data={**fields, "event_id": f"other-{m}", "points": "0"})
    assert refused.status_code == 422 and "/points" in refused.text
    with stack.client(stack.key()) as till:
        assert till.get(f"/v1/members/{m}").json()["balance"] == 70


def test_a_dead_letter_is_re_driven_edited_and_the_re_drive_is_recorded(stack, admin):
    m = member()
    bad = {**b.purchase(m, "2025-05-01T10:00:00Z", 4000), "amount_minor": "4000"}
    raw = orjson.dumps(bad)
    produce_raw(stack, [(m.encode(), raw)])
    letter_id = wait_for_dead_letter(admin, m, DEAD_LETTER_TIMEOUT_S)
    listing = admin.get("/console/dead-letters", params={"reason": "schema"})
    assert letter_id in listing.text and "/amount_minor" in listing.text
    assert letter_id not in admin.get("/console/dead-letters", params={"reason": "not_json"}).text
    detail = admin.get(f"/console/dead-letters/{letter_id}")
    as_is = admin.post("/console/dead-letters/redrive", data={"csrf": csrf_of(detail.text), "id": letter_id})
    assert "refused" in as_is.text and "schema" in as_is.text  # not produced: it would fail again
    edited = orjson.dumps({**bad, "amount_minor": 4000})
    answer = admin.post("/console/dead-letters/redrive",
                        data={"csrf": csrf_of(detail.text), "id": letter_id, "payload": edited.decode()})
    assert answer.status_code == 200 and "points_earned" in answer.text
    with stack.client(stack.key()) as till:
        assert till.get(f"/v1/members/{m}").json()["balance"] == 40
    listing = admin.get("/console/dead-letters").text
    before, after = hashlib.sha256(raw).hexdigest()[:12], hashlib.sha256(edited).hexdigest()[:12]
    assert f"<code>{before}</code> → <code>{after}</code>" in listing
    assert f"<code>{before}</code> → <code>{before}</code>" in listing  # the refused as-is attempt


def test_campaigns_and_overview_answer(stack, admin):
    assert 'id="no-campaigns"' in admin.get("/console/campaigns").text  # this stack's program has none
    overview = admin.get("/console/overview")
    assert overview.status_code == 200 and 'id="kpis"' in overview.text and 'id="read-model-lag"' in overview.text
    assert re.search(r'id="consumer-lag">[0-9,]+<', overview.text)  # the broker answered its end offsets
    assert re.search(r'id="applied-events">[1-9][0-9,]*<', overview.text)
    charts = re.findall(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', overview.text)
    assert len(charts) == len(CHARTS)  # loyalty kpis --chart's charts, drawn as SVG
    assert all(ElementTree.fromstring(base64.b64decode(chart)).tag.endswith("svg") for chart in charts)


def test_a_selection_of_dead_letters_is_re_driven_as_it_is(stack, admin):
    m = member()
    purchases = [b.purchase(m, "2025-07-01T10:00:00Z", 3000), b.purchase(m, "2025-07-02T10:00:00Z", 2000)]
    produce_raw(stack, [(b"not-the-member", orjson.dumps(purchase)) for purchase in purchases])  # key_mismatch
    letters = [wait_for_dead_letter(admin, purchase["event_id"], DEAD_LETTER_TIMEOUT_S) for purchase in purchases]
    page = admin.get("/console/dead-letters", params={"reason": "key_mismatch"})
    answer = admin.post("/console/dead-letters/redrive",
                        data={"csrf": csrf_of(page.text), "id": letters})  # keyed by member_id this time
    assert answer.status_code == 200 and answer.text.count('class="result">points_earned<') == 2
    with stack.client(stack.key()) as till:
        assert till.get(f"/v1/members/{m}").json()["balance"] == 50
    again = admin.post("/console/dead-letters/redrive", data={"csrf": csrf_of(page.text), "id": letters[0]})
    assert 'class="result">points_earned<' in again.text  # idempotent: the recorded outcome, nothing new
    with stack.client(stack.key()) as till:
        assert till.get(f"/v1/members/{m}").json()["balance"] == 50


def test_a_hostile_dead_letter_payload_is_shown_as_text(stack, admin):
    marker = uuid.uuid4().hex
    hostile = f'<script>alert("{marker}")</script>'.encode()
    produce_raw(stack, [(b"<b>key</b>", hostile)])  # not_json
    letter_id = wait_for_dead_letter(admin, marker, DEAD_LETTER_TIMEOUT_S)
    for page in (admin.get("/console/dead-letters").text, admin.get(f"/console/dead-letters/{letter_id}").text):
        assert f'&lt;script&gt;alert(&#34;{marker}&#34;)&lt;/script&gt;' in page and hostile.decode() not in page


def test_the_member_page_shows_the_profile_to_crm_keys_only_and_erased_to_all(stack, admin):
    m = member()
    with stack.client(stack.key()) as till:
        enrolled = mb.enrolled(m, "2025-03-01T10:00:00Z", profile=mb.PROFILE, marketing=True)
        assert till.post("/v1/events", json=enrolled).status_code == 200
        crm_page = admin.get("/console/members", params={"member_id": m}).text  # admin: every scope
        assert 'id="profile"' in crm_page and mb.PROFILE["email"] in crm_page
        reader = console_client(stack, stack.key(["read"]))
        try:
            plain = reader.get("/console/members", params={"member_id": m}).text
            assert 'id="profile"' not in plain and mb.PROFILE["email"] not in plain
            assert till.post("/v1/events", json=mb.erased(m, "2025-03-02T10:00:00Z")).status_code == 200
            assert 'id="erased"' in reader.get("/console/members", params={"member_id": m}).text
        finally:
            reader.close()
    gone = admin.get("/console/members", params={"member_id": m}).text
    assert 'id="erased"' in gone and mb.PROFILE["email"] not in gone and "<dd>erased</dd>" in gone


def test_the_api_stops_cleanly_after_the_console_opened_its_parts(stack, admin):
    """Last in this module: it stops the stack's API (its read models and Kafka client closed)."""
    assert admin.get("/console/overview").status_code == 200  # read models and the offsets client open
    api = stack.apis[0]
    api.process.send_signal(signal.SIGTERM)
    assert api.process.wait(API_STOP_TIMEOUT_S) == 0
    assert "Traceback" not in api.log_path.read_text()

