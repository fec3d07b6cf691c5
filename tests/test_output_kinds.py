"""The figures of ordinal, numeric and multi-label outputs: tables, agreement, vs gold, end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llm_annotator.analysis.kinds import output_table
from llm_annotator.core.outputs import OutputSpec
from llm_annotator.outputs.tables import label_table

PROBS = np.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3], [0.0, 0.0, 1.0], [np.nan, np.nan, np.nan]])
ITEMS = ["a", "b", "c", "d"]
N_VALID = np.array([3, 2, 6, 0])


def test_categorical_table_is_the_label_table_with_soft_labels() -> None:
    spec = OutputSpec(name="sentiment", labels=["neg", "neu", "pos"])
    table = output_table(spec, ITEMS, PROBS, N_VALID, 6)
    expected = label_table(ITEMS, PROBS, N_VALID, 6, ["neg", "neu", "pos"])
    assert table.columns.tolist() == [*expected.columns, "soft_label"]
    pd.testing.assert_frame_equal(table.drop(columns="soft_label"), expected)
    assert table["soft_label"].iloc[0] == [0.2, 0.3, 0.5]


def test_ordinal_table_adds_median_and_spread() -> None:
    spec = OutputSpec(name="intensity", kind="ordinal", labels=["low", "medium", "high"])
    table = output_table(spec, ITEMS, PROBS, N_VALID, 6)
    assert table.columns.tolist()[-3:] == ["median", "spread", "soft_label"]
    # cumulative 0.2, 0.5 -> medium; 0.6 -> low; all on high -> high
    assert table["median"].tolist()[:3] == ["medium", "low", "high"]
    assert pd.isna(table["median"].iloc[3])
    # spread = sum p_k |k - m| / (K - 1)
    assert table["spread"].iloc[0] == pytest.approx((0.2 + 0.5) / 2)
    assert table["spread"].iloc[1] == pytest.approx((0.1 + 2 * 0.3) / 2)
    assert table["spread"].iloc[2] == 0.0
    assert np.isnan(table["spread"].iloc[3])
    assert table["label"].tolist()[:3] == ["high", "low", "high"]


def test_numeric_table_takes_the_mixture_moments() -> None:
    spec = OutputSpec(name="arousal", kind="numeric", range=(1, 3), integer=True)
    moments = np.array([[2.0, 4.25], [1.5, 2.5], [3.0, 9.0], [np.nan, np.nan]])
    table = output_table(spec, ITEMS, PROBS, N_VALID, 6, moments)
    assert table.columns.tolist() == ["item_id", "p_1", "p_2", "p_3", "label", "confidence", "margin",
                                      "entropy_confidence", "n_valid", "n_requested", "valid_share", "mean", "sd",
                                      "median", "soft_label"]
    assert table["mean"].tolist()[:3] == [2.0, 1.5, 3.0]
    assert table["sd"].tolist()[:3] == pytest.approx([0.5, 0.5, 0.0])
    assert table["median"].tolist()[:3] == [2.0, 1.0, 3.0]
    assert table[["mean", "sd", "median"]].iloc[3].isna().all()
    # without moments: the histogram's over the bins' midpoints
    hist = output_table(spec, ITEMS, PROBS, N_VALID, 6)
    assert hist["mean"].iloc[0] == pytest.approx(0.2 * 1 + 0.3 * 2 + 0.5 * 3)


def test_multi_label_table() -> None:
    spec = OutputSpec(name="emotions", kind="multi_label", labels=["joy", "anger", "sadness"])
    table = output_table(spec, ITEMS, PROBS, N_VALID, 6)
    assert table.columns.tolist() == ["item_id", "p_joy", "p_anger", "p_sadness", "set", "label", "expected_size",
                                      "confidence", "n_valid", "n_requested", "valid_share"]
    assert table["set"].tolist()[:3] == [["sadness"], ["joy"], ["sadness"]]
    assert table["label"].tolist()[:3] == ["sadness", "joy", "sadness"]
    assert pd.isna(table["label"].iloc[3]) and table["set"].iloc[3] is None
    assert table["expected_size"].iloc[0] == pytest.approx(1.0)
    assert table["confidence"].iloc[1] == pytest.approx((0.6 + 0.9 + 0.7) / 3)
    assert table["confidence"].iloc[2] == 1.0
    assert table["valid_share"].tolist() == [0.5, 2 / 6, 1.0, 0.0]
