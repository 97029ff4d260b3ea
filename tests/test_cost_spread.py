"""The study's `cost ×` carries its timing rounds' spread (issue 36): a one-pass trick whose
rounds straddle the baseline's reads "≈ 1×", a costly one keeps its ratio with the range."""

from runner.study.cost import ratios, round_ratio_range
from runner.study.report import cost_text


def test_rounds_paired_by_index_give_the_range():
    base = [1.0, 1.2, 1.0, 1.1, 1.0]
    arm = [1.1, 1.0, 1.3, 1.0, 0.95]
    lo, hi = round_ratio_range(arm, base)
    assert lo == min(a / b for a, b in zip(arm, base))
    assert hi == max(a / b for a, b in zip(arm, base))
    assert round_ratio_range(arm[:4], base) is None  # a round missing: no pairing
    assert round_ratio_range([1.0], [1.0]) is None  # one round: no spread


def test_a_one_pass_trick_within_its_spread_reads_about_one():
    c = ratios({"none": [1.0, 1.2, 1.0], "ls": [1.3, 1.0, 1.1]}, "none", 200)
    assert c["ls"]["ratio"] == 1.0  # min over rounds against min over rounds
    assert cost_text(c["ls"]).startswith("≈ 1× (0.83–1.30)")


def test_a_costly_trick_keeps_its_ratio_and_range():
    c = ratios({"none": [1.0, 1.0, 1.1], "fgm": [2.0, 2.1, 2.0]}, "none", 200)
    assert cost_text(c["fgm"]) == "2.00× (1.82–2.10)"


def test_a_record_without_range_reads_as_before():
    # committed study.json files have no ratio_range: their reports re-make unchanged
    assert cost_text({"ratio": 1.39, "sec_per_step": 0.001}) == "1.39×"
    assert cost_text(None) == "–"
