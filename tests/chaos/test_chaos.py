"""The service under reads, webhooks and refreshes while Redis dies and Simpro fails.

One run of every phase (`scenario.run_chaos`, about a minute), started once for the
module; each test asserts one property of what it recorded. `bench/soak.py` runs the
same phases for minutes.
"""

from __future__ import annotations

import pytest

from tests.chaos.scenario import ChaosPlan, ChaosReport, run_chaos

# The service's resident memory may grow this much over the run (after warm-up): the
# near-cache, the ledger mirror and the HTTP buffers are bounded, so more is a leak.
RSS_GROWTH_BOUND_KIB = 48 * 1024

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> ChaosReport:
    report = run_chaos(tmp_path_factory.mktemp("chaos"), ChaosPlan())
    print("\n".join(report.lines()))
    return report


def test_every_read_answers_a_number(chaos: ChaosReport) -> None:
    assert chaos.reads.reads > 500  # the readers ran through every phase
    assert chaos.reads.failed == 0, chaos.reads.examples


def test_no_value_read_was_never_true(chaos: ChaosReport) -> None:
    # Every metric only grows in this run: every value read lay between the truth where
    # the run started and the truth when it was read, and none went back to a smaller one.
    # (Counts move by steps of one, so each of theirs was also the exact truth at some
    # moment; a revenue total may be no moment's exact sum while deliveries are applied
    # out of order after a failure: `off_history`, reported, not a wrong value.)
    assert chaos.reads.wrong == 0, chaos.reads.examples


def test_every_webhook_delivery_is_applied(chaos: ChaosReport) -> None:
    assert chaos.deliveries >= chaos.changes > 100
    assert chaos.deliveries_lost == []
    # With no refresh after the last change, only the deliveries can have brought the
    # values to the truth.
    assert chaos.settled_values == chaos.final_truth


def test_the_final_counts_equal_the_truth(chaos: ChaosReport) -> None:
    assert chaos.final_values == chaos.final_truth


def test_the_chaos_happened(chaos: ChaosReport) -> None:
    """The phases did what they say: otherwise the properties above prove nothing."""
    assert chaos.redis_kills == 2
    assert chaos.aof_truncations == chaos.aof_loaded_truncated == 1
    assert chaos.fault_requests > 0
    # Refused while Redis was down and while the backlog was full, then redelivered.
    assert chaos.deliveries_refused_503 > chaos.deliveries_refused_backlog > 0
    assert chaos.deliveries_retried > 0


def test_the_service_memory_stays_bounded(chaos: ChaosReport) -> None:
    assert chaos.rss_baseline_kib > 0
    assert chaos.rss_growth_kib < RSS_GROWTH_BOUND_KIB, chaos.lines()
