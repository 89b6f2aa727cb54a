"""The ``campaigns`` read model (contract 2, section 12): a row per campaign with its
purchases, members, points, rewards, budget left and qualifying spend; refunds change
nothing; ``verify`` checks it from the facts alone; live catch-up in small batches and a
replay give the same rows; ``export`` writes it."""

from __future__ import annotations

import io

import orjson
import pytest

from ledger.application import LoyaltyLedger
from projections.campaigns import CAMPAIGNS
from projections.export import export
from projections.runner import read_model_digests, replay
from projections.verify import verify
from tests.projections.steps import projected, rows_by_key
from tests.support import builders as b
from tests.support.campaigns import campaign_toml, program_with
from tests.support.ledger_steps import apply

PROGRAM = program_with(
    campaign_toml("bonus", "bonus_points = 40\nbudget_points = 100"),
    campaign_toml("mug", 'skus = ["COF-1"]\nitems_min = 3\nreward_id = "RW-MUG"'),
    campaign_toml("never", "bonus_points = 1", ("2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z")))
COFFEES = [{"sku": "COF-1", "quantity": 3, "amount_minor": 900}]


@pytest.fixture
def campaign_ledger(pg_env):
    ledger = LoyaltyLedger(env=pg_env, program=PROGRAM)
    apply(ledger,
          {**b.purchase("A", "2025-06-02T10:00:00Z", 1000, event_id="a-1"), "items": COFFEES},
          b.purchase("A", "2025-06-03T10:00:00Z", 2000),
          b.purchase("B", "2025-06-04T10:00:00Z", 3000),        # 20 left: a partial line
          b.purchase("C", "2025-06-05T10:00:00Z", 4000),        # budget spent: no line
          b.refund("A", "2025-06-06T10:00:00Z", "a-1", 1000),   # gives no budget back
          b.purchase("D", "2025-08-01T10:00:00Z", 5000))        # after every window
    yield ledger
    ledger.close()


def test_a_row_per_campaign_that_benefited_someone(campaign_ledger, pg_env):
    with projected(campaign_ledger, pg_env, ["campaigns"]) as models:
        rows = rows_by_key(models, "campaigns", CAMPAIGNS)
    assert rows == {
        ("bonus",): {"campaign_id": "bonus", "purchases": 3, "members": 2, "points_awarded": 100,
                     "rewards_granted": 0, "budget_left": 0, "qualifying_spend_minor": 6000},
        ("mug",): {"campaign_id": "mug", "purchases": 1, "members": 1, "points_awarded": 0,
                   "rewards_granted": 1, "budget_left": None, "qualifying_spend_minor": 1000},
    }


def test_verify_checks_it_and_replay_gives_the_same_rows(campaign_ledger, pg_env):
    with projected(campaign_ledger, pg_env) as models:
        report = verify(campaign_ledger, models)
        assert report.ok, report.mismatches
        assert "campaigns" in report.positions
        before = read_model_digests(models)
        replay(campaign_ledger, models)
        assert read_model_digests(models) == before


def test_live_catch_up_in_steps_gives_the_rows_of_one_catch_up(pg_env):
    """Rows updated in later transactions (upserts, not the first COPY) come out the same."""
    ledger = LoyaltyLedger(env=pg_env, program=PROGRAM)
    apply(ledger, b.purchase("A", "2025-06-02T10:00:00Z", 1000))
    with projected(ledger, pg_env, ["campaigns"]) as models:
        apply(ledger, b.purchase("A", "2025-06-03T10:00:00Z", 1000),
              {**b.purchase("B", "2025-06-04T10:00:00Z", 900), "items": COFFEES})
        from projections.runner import catch_up
        catch_up(ledger, models, batch_notifications_max=1)
        rows = rows_by_key(models, "campaigns", CAMPAIGNS)
        assert verify(ledger, models).ok
    ledger.close()
    assert rows[("bonus",)]["purchases"] == 3 and rows[("bonus",)]["members"] == 2
    assert rows[("bonus",)]["budget_left"] == 0 and rows[("mug",)]["rewards_granted"] == 1


def test_verify_finds_a_wrong_campaign_row(campaign_ledger, pg_env):
    with projected(campaign_ledger, pg_env, ["campaigns"]) as models:
        view = models.view("campaigns")
        with view.datastore.transaction(commit=True) as cursor:
            cursor.execute("UPDATE campaigns SET points_awarded = 99 WHERE campaign_id = 'bonus'")
        report = verify(campaign_ledger, models)
    assert [(m.read_model, m.member_id, m.field, m.ledger, m.read_model_value)
            for m in report.mismatches] == [("campaigns", "bonus", "points_awarded", 100, 99)]


def test_export_writes_the_rows(campaign_ledger, pg_env):
    out = io.StringIO()
    with projected(campaign_ledger, pg_env, ["campaigns"]) as models:
        assert export("campaigns", campaign_ledger, models, out) == 2
    first = orjson.loads(out.getvalue().splitlines()[0])
    assert first["campaign_id"] == "bonus" and first["budget_left"] == 0


def test_the_member_view_lists_the_campaign_lines(campaign_ledger):
    from projections.auditor import member_view, member_view_document, render_member_view
    from rich.console import Console

    view = member_view(campaign_ledger, "A")
    assert [(line["source_event_id"], line["campaign_id"], line["points"], line["reward_id"])
            for line in view.campaigns] == [("a-1", "bonus", 40, None), ("a-1", "mug", 0, "RW-MUG"),
                                            (view.campaigns[2]["source_event_id"], "bonus", 40, None)]
    assert member_view_document(view)["campaigns"][1]["reward_id"] == "RW-MUG"
    console = Console(record=True, width=200)
    render_member_view(view, console)
    assert "campaign lines" in console.export_text()
