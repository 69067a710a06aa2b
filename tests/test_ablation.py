"""The ablation runner's variants and its summary table (the training itself: tests/test_ciea.py)."""

from __future__ import annotations

import pytest

from ciea.ablation import VARIANTS, result_path, summary_table, variant_config
from ciea.train import SCHEDULES
from ciea.validation import InputError


def test_each_variant_changes_one_thing_of_the_shipped_schedule():
    shipped = variant_config("shipped", seed=1, max_minutes=2.0)
    assert shipped.seed == 1 and shipped.max_minutes == 2.0 and shipped.ciea == SCHEDULES["ciea"]["ciea"]
    pooled = variant_config("mean pooling", 0, 2.0)
    assert pooled.ciea == {**SCHEDULES["ciea"]["ciea"], "attention_pool": False}  # merged, not replaced
    assert variant_config("lambda 0 (no L_comp)", 0, 2.0).lam == 0.0
    by_epochs = variant_config("shipped", 0, 2.0, epochs=3)
    assert by_epochs.epochs == 3 and by_epochs.max_minutes is None  # a budget in epochs has no time limit
    for name in VARIANTS:
        changed = variant_config(name, 0, 2.0)
        differs = [f for f in ("lam", "use_weights", "hard_negative_epochs", "ciea")
                   if getattr(changed, f) != getattr(shipped, f)]
        assert len(differs) == (0 if name == "shipped" else 1), name
    with pytest.raises(InputError, match="Unknown ablation variant 'nope'"):
        variant_config("nope", 0, 2.0)


def test_summary_table_gives_mean_and_spread_over_seeds(tmp_path):
    def run(variant: str, seed: int, complementary: float) -> dict:
        return {"variant": variant, "seed": seed, "epochs": 3, "selection": 0.5 + seed / 10,
                "mrr10": {"scenes": {"test": {"complementary": complementary}, "dev": {"complementary": 0.1}}}}

    table = summary_table([run("shipped", 0, 0.6), run("shipped", 1, 0.8), run("mean pooling", 0, 0.4)])
    rows = table.splitlines()
    assert rows[0].startswith("| variant | seeds | epochs | selection (dev) | scenes complementary (test)")
    assert rows[2].startswith("| shipped | 2 | 3.0 | 0.550 ± 0.071 | 0.700 ± 0.141 | - |")
    assert rows[3].startswith("| mean pooling | 1 | 3.0 | 0.500 | 0.400 | - |")
    assert "0.100" in summary_table([run("shipped", 0, 0.6)], "dev")
    assert result_path(tmp_path, "lambda 0 (no L_comp)", 2, 1.5).name == "lambda-0--no-l-comp-seed2-1.5min.json"
    assert result_path(tmp_path, "shipped", 0, 2.0, epochs=3).name == "shipped-seed0-3ep.json"
