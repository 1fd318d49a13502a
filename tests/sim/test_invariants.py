"""The safety ledger the simulator and the chaos checker share."""

from __future__ import annotations

from almost_raft.sim._invariants import SafetyLedger


def test_a_second_leader_of_a_term_is_named_with_the_first() -> None:
    ledger = SafetyLedger()
    assert ledger.claim("a", 3, 1.0) is None
    assert ledger.claim("a", 3, 1.5) is None  # the same leader again is no finding
    assert ledger.claim("b", 4, 2.0) is None
    assert ledger.claim("c", 3, 2.5) == ("a", 1.0)


def test_a_term_that_goes_down_is_named_with_the_highest_before_it() -> None:
    ledger = SafetyLedger()
    assert ledger.term_seen("a", 2, 1.0, "log") is None
    assert ledger.term_seen("a", 5, 2.0, "state file") is None
    assert ledger.term_seen("a", 5, 2.5, "log") is None
    assert ledger.term_seen("b", 1, 3.0) is None  # each node on its own
    assert ledger.term_seen("a", 4, 3.0, "log") == (5, 2.5, "log")
    # The finding does not lower the mark: a later 4 is still a step down.
    assert ledger.term_seen("a", 4, 3.5, "log") == (5, 2.5, "log")
