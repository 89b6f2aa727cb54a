"""The operator console in headless Chromium (Debian's ``chromium``, driven by Playwright).

A ``loyalty api`` process and a worker on the embedded broker and
PostgreSQL take a small stream from the demo's simulator; a person at the
console signs in, finds a member and checks the page against ``loyalty
member --json``, moves the "as of" time back, re-drives an edited dead
letter, adjusts points, and is refused the adjust form without ``admin``; a
hostile member id stays text. A screenshot of every page goes to
``tests/artifacts/console/``.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

import orjson
import pytest

from streams.devkit.simulator import SimulationConfig, simulate_events
from tests.support import builders as b
from tests.support.browser import chromium_contexts, screenshot, sign_in
from tests.support.console import console_stack, produce_raw
from tests.support.processes import loyalty

pytestmark = pytest.mark.browser

STREAM = SimulationConfig(seed=11, members=25, stores=3, days=90)
AS_OF_CANDIDATES_MAX = 5


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, embedded_pg, tmp_path_factory):
    with console_stack(kafka_bootstrap, embedded_pg, tmp_path_factory.mktemp("console-browser")) as stack:
        yield stack


@pytest.fixture(scope="module")
def member(stack):
    """The busiest member of a simulated stream (no referrer: no credit arrives later), applied."""
    events = list(simulate_events(STREAM))
    referrers = {event["referrer_member_id"] for event in events if event["type"] == "referral"}
    counts = Counter(event["member_id"] for event in events if event["type"] == "purchase")
    chosen = next(m for m, _ in counts.most_common() if m not in referrers)
    produce_raw(stack, [(event["member_id"].encode(), orjson.dumps(event)) for event in events])
    last = max(event["occurred_at"] for event in events if event["member_id"] == chosen)
    with stack.client(stack.key()) as till:  # read-your-writes: every earlier event of the member is applied
        answer = till.post("/v1/events", json=b.birthday(chosen, last))
        assert answer.status_code == 200, answer.text
    return chosen


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium_contexts(tmp_path_factory.mktemp("chromium")) as new_context:
        yield new_context


@pytest.fixture(scope="module")
def admin_page(stack, browser):
    page = browser().new_page()
    page.goto(f"{stack.url}/console/sign-in")
    screenshot(page, "sign-in")
    sign_in(page, stack.url, stack.key())
    screenshot(page, "overview")
    return page


def cli_member(stack, tmp_path, member_id: str, *options: str) -> dict:
    shown = loyalty("member", member_id, "--json", *options, cwd=tmp_path,
                    env={"LOYALTY_DATABASE_URL": stack.settings.database_url})
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def history_on(page) -> list[tuple[int, str, str]]:
    rows = page.locator("#history tr.fact")
    return [(int(rows.nth(i).locator("td").nth(0).inner_text()), rows.nth(i).locator(".fact-type").inner_text(),
             rows.nth(i).locator(".source-event-id").inner_text()) for i in range(rows.count())]


def show_member(page, stack, member_id: str) -> None:
    page.goto(f"{stack.url}/console/members")
    page.fill("input[name=member_id]", member_id)
    page.click("form.search button[type=submit]")
    page.wait_for_selector("#balance")


def test_overview_and_campaigns_show_their_figures(stack, admin_page, member):
    page = admin_page
    page.goto(f"{stack.url}/console/overview")
    assert page.locator("#kpis").is_visible() and page.locator("#read-model-lag").is_visible()
    assert int(page.locator("#applied-events").inner_text().replace(",", "")) > 0
    screenshot(page, "overview")
    page.click("text=Campaigns")
    assert "No campaigns" in page.locator("#no-campaigns").inner_text()
    screenshot(page, "campaigns")


def test_a_member_shows_what_loyalty_member_shows_now_and_as_of_an_earlier_time(stack, admin_page, member,
                                                                                tmp_path):
    page = admin_page
    show_member(page, stack, member)
    expected = cli_member(stack, tmp_path, member)
    assert page.locator("#balance").inner_text() == f"{expected['balance']['balance']:,}"
    assert page.locator("#tier").inner_text() == expected["tier"]["tier"]
    assert history_on(page) == [(fact["version"], fact["type"], fact["source_event_id"] or "-")
                                for fact in expected["history"]]
    screenshot(page, "member")
    # move "as of" back to an earlier fact's time where the balance was another
    clocks = [fact["clock"] for fact in expected["history"][1:]]
    for clock in clocks[len(clocks) // 2::-1][:AS_OF_CANDIDATES_MAX]:
        then = cli_member(stack, tmp_path, member, "--as-of", clock)
        if then["balance"]["balance"] != expected["balance"]["balance"]:
            break
    else:
        pytest.fail("no earlier time with another balance among the member's facts")
    page.fill("input[name=as_of]", clock[:19])
    page.click("form.search button[type=submit]")
    page.wait_for_selector("#balance")
    assert page.locator("#balance").inner_text() == f"{then['balance']['balance']:,}"
    assert [row[0] for row in history_on(page)] == [fact["version"] for fact in then["history"]]
    screenshot(page, "member-as-of")


def test_a_dead_letter_edited_and_re_driven_is_applied_to_the_member(stack, admin_page):
    page = admin_page
    m = f"m-{uuid.uuid4().hex[:10]}"
    bad = {**b.purchase(m, "2025-06-01T10:00:00Z", 5000), "amount_minor": "5000"}
    produce_raw(stack, [(m.encode(), orjson.dumps(bad))])
    row = page.locator("tr.dead-letter", has_text=m)
    for _ in range(60):
        page.goto(f"{stack.url}/console/dead-letters?reason=schema")
        if row.count():
            break
        page.wait_for_timeout(500)
    assert "/amount_minor" in row.locator(".message").inner_text()
    screenshot(page, "dead-letters")
    row.locator("text=open / edit").click()
    page.fill("textarea[name=payload]", orjson.dumps({**bad, "amount_minor": 5000}).decode())
    screenshot(page, "dead-letter-edit")
    page.click("text=Re-drive this payload")
    assert page.locator("#redrive-results .result").inner_text() == "points_earned"
    screenshot(page, "redriven")
    page.click(f"#redrive-results a:has-text('{m}')")
    page.wait_for_selector("#balance")
    assert page.locator("#balance").inner_text() == "50"
    assert (bad["event_id"], "points_earned") in [(row[2], row[1]) for row in history_on(page)]


def test_an_adjustment_form_round_trip(stack, admin_page, member):
    page = admin_page
    show_member(page, stack, member)
    before = int(page.locator("#balance").inner_text().replace(",", ""))
    clock = page.locator("#clock").inner_text()  # at the member's own time: no lot expires meanwhile
    page.click("text=Adjust this member's points")
    page.fill("input[name=points]", "25")
    page.select_option("select[name=reason_code]", "goodwill")
    page.fill("input[name=note]", "called about a missing receipt")
    page.fill("input[name=occurred_at]", clock)
    page.click("#adjust-form button[type=submit]")
    assert page.locator("#adjust-result .outcome").inner_text() == "points_adjusted"
    assert page.locator("#result-balance").inner_text() == f"{before + 25:,}"
    screenshot(page, "adjust")
    page.click("#adjust-result >> text=See the member")
    page.wait_for_selector("#balance")
    assert page.locator("#balance").inner_text() == f"{before + 25:,}"
    assert page.locator("#history tr.fact .fact-type").last.inner_text() == "points_adjusted"


def test_a_key_without_admin_can_neither_see_nor_post_the_adjust_form(stack, browser, member):
    page = browser().new_page()
    sign_in(page, stack.url, stack.key(["read"]))
    assert page.locator("nav a", has_text="Adjust").count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    refused = page.goto(f"{stack.url}/console/adjust?member_id={member}")
    assert refused.status == 403 and "no admin scope" in page.content()
    screenshot(page, "adjust-forbidden")
    posted = page.request.post(f"{stack.url}/console/adjust",
                               form={"csrf": csrf, "member_id": member, "points": "1000",
                                     "reason_code": "goodwill", "event_id": f"e-{uuid.uuid4().hex}",
                                     "occurred_at": "2030-01-01T00:00:00Z"})
    assert posted.status == 403


def test_a_member_id_with_a_script_renders_as_text(stack, admin_page):
    page = admin_page
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    hostile = '<script>alert("member")</script><img src=x onerror=alert(1)>'
    show_member_unknown = page.goto(f"{stack.url}/console/members?member_id="
                                    + "%3Cscript%3Ealert(%22member%22)%3C%2Fscript%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert show_member_unknown.status == 404
    assert page.locator("#unknown-member code").inner_text() == hostile
    assert page.locator("main script, main img").count() == 0 and dialogs == []
    screenshot(page, "hostile-member-id")
