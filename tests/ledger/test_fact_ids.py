"""A fact's id is RFC 4122's name-based UUID of its member and version, computed without ``uuid``."""

from __future__ import annotations

from uuid import UUID, uuid5

from hypothesis import given
from hypothesis import strategies as st

from ledger.fact_ids import FACT_NAMESPACE, fact_id


@given(member_id=st.text(min_size=1, max_size=64), version=st.integers(min_value=1, max_value=2**63 - 1))
def test_the_id_is_uuid5_of_member_and_version(member_id, version):
    assert fact_id(member_id, version) == str(uuid5(FACT_NAMESPACE, f"{member_id}/{version}"))


def test_the_id_is_a_version_5_uuid_and_stable():
    made = fact_id("M-000001", 7)
    assert UUID(made).version == 5
    assert made == fact_id("M-000001", 7) != fact_id("M-000001", 8)
