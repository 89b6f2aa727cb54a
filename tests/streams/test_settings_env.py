"""``Settings.from_env``: how a ``LOYALTY_*`` variable's text becomes a field's value."""

from __future__ import annotations

import pytest

from streams.settings import Settings


@pytest.mark.parametrize("text, expected", [("1", True), ("true", True), ("True", True), ("on", True),
                                            ("0", False), ("false", False), ("False", False), ("off", False)])
def test_a_boolean_setting_reads_the_usual_words(text, expected):
    assert Settings.from_env({"LOYALTY_PRODUCER_IDEMPOTENT": text}).producer_idempotent is expected


def test_a_boolean_setting_survives_the_trip_through_a_child_processs_environment():
    settings = Settings(producer_idempotent=True)
    assert Settings.from_env(settings.to_env()) == settings


def test_the_idempotent_producer_is_off_unless_asked_for():
    """Off by default: the embedded broker (tansu) fails idempotent producers."""
    assert Settings.from_env({}).producer_idempotent is False


def test_a_boolean_setting_that_is_not_a_boolean_names_its_variable():
    with pytest.raises(ValueError, match=r"LOYALTY_PRODUCER_IDEMPOTENT='maybe': expected one of 1, true"):
        Settings.from_env({"LOYALTY_PRODUCER_IDEMPOTENT": "maybe"})
