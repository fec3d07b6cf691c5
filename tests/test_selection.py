"""Which items to review next (analysis.selection): orderings, designs, inclusion probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from llm_annotator.analysis.selection import STRATEGIES, Selection, choose, inclusion_probabilities
from llm_annotator.core.errors import ConfigError


def soft(seed: int = 0, n_items: int = 60) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet([0.5, 0.5, 0.5], size=n_items)


def test_confidence_lowest_first_ties_by_margin_then_order_missing_first() -> None:
    probs = np.array([[0.5, 0.3, 0.2], [0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [np.nan] * 3, [0.5, 0.3, 0.2],
                      [0.6, 0.2, 0.2]])
    chosen = choose("confidence", 5, probs=probs)
    # NaN (no valid answer) first; 0.5 ties: margin 0 before margin 0.2, then item order
    assert chosen == Selection("confidence", (3, 1, 0, 4, 5), None, 6)
    explicit = choose("confidence", 2, confidence=[0.7, 0.2, 0.2, 0.9], probs=[[0.7, 0.3], [0.2, 0.8], [0.2, 0.8],
                                                                            [0.9, 0.1]])
    assert explicit.indices == (1, 2)


def test_disagreement_highest_first_ties_by_lower_confidence() -> None:
    chosen = choose("disagreement", 4, disagreement=[0.5, 0.9, 0.5, np.nan, 0.0], confidence=[0.9, 0.8, 0.4, 0.1, 0.3])
    assert chosen.indices == (1, 2, 0, 4) and chosen.inclusion is None
    # one annotator: every score is 0, so the order is the confidence order
    assert choose("disagreement", 3, disagreement=[0] * 4, confidence=[0.9, 0.2, 0.5, 0.3]).indices == (1, 3, 2)


def test_random_is_seeded_uniform_and_respects_exclusions() -> None:
    probs = soft()
    a = choose("random", 10, probs=probs, exclude=range(20), seed=5)
    assert a == choose("random", 10, probs=probs, exclude=range(20), seed=5)
    assert a.indices != choose("random", 10, probs=probs, exclude=range(20), seed=6).indices
    assert min(a.indices) >= 20 and len(set(a.indices)) == 10 and list(a.indices) == sorted(a.indices)
    assert a.inclusion == tuple([10 / 40] * 10) and a.n_eligible == 40


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_skips_excluded_items_and_takes_all_when_few_are_left(strategy: str) -> None:
    probs = soft(1, 12)
    kwargs = {"probs": probs, "confidence": probs.max(axis=1), "disagreement": np.linspace(0, 1, 12)}
    chosen = choose(strategy, 4, exclude=[0, 3, 5, 11], **kwargs)
    assert len(chosen.indices) == 4 and not {0, 3, 5, 11} & set(chosen.indices)
    everything = choose(strategy, 50, exclude=[0, 1], **kwargs)
    assert sorted(everything.indices) == list(range(2, 12))
    if chosen.inclusion is not None:
        assert everything.inclusion == tuple([1.0] * 10)


def test_interval_probabilities_sum_to_n_lie_in_0_1_and_follow_the_spread() -> None:
    probs = soft(2, 200)
    pi = inclusion_probabilities(probs, 30, exclude=[0, 1])
    assert pi[:2].tolist() == [0.0, 0.0]
    assert pi.sum() == pytest.approx(30)
    assert ((pi[2:] > 0) & (pi[2:] <= 1)).all()
    spread = np.sqrt((probs * (1 - probs)).sum(axis=1))
    assert np.corrcoef(spread[2:], pi[2:])[0, 1] > 0.99  # proportional up to the uniform floor
    chosen = choose("interval", 30, probs=probs, exclude=[0, 1], seed=3)
    assert chosen.inclusion is not None and len(chosen.indices) == 30 == len(set(chosen.indices))
    assert chosen.inclusion == pytest.approx(pi[list(chosen.indices)].tolist())
    assert chosen == choose("interval", 30, probs=probs, exclude=[0, 1], seed=3)
    # one-hot soft labels carry no spread: the design is uniform
    onehot = np.eye(3)[np.arange(90) % 3]
    assert inclusion_probabilities(onehot, 9) == pytest.approx(np.full(90, 0.1))


def test_interval_draws_each_item_with_its_inclusion_probability() -> None:
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [0.99, 0.01], [0.7, 0.3], [0.55, 0.45],
                      [0.8, 0.2]])
    pi = inclusion_probabilities(probs, 3, uniform_share=0.1)
    counts = np.zeros(len(probs))
    draws = 4000
    for seed in range(draws):
        chosen = choose("interval", 3, probs=probs, seed=seed, uniform_share=0.1)
        assert len(chosen.indices) == 3
        counts[list(chosen.indices)] += 1
    assert counts / draws == pytest.approx(pi, abs=0.03)
    assert pi.max() == 1.0 or pi.max() < 1  # capped items are taken for certain
    capped = inclusion_probabilities(probs, 7, uniform_share=0.1)
    assert capped.sum() == pytest.approx(7) and capped.max() == 1.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"strategy": "entropy", "n": 3, "probs": [[0.5, 0.5]]},
     "unknown review strategy 'entropy'; the strategies are confidence, disagreement, random, interval"),
    ({"strategy": "random", "n": 0, "probs": [[0.5, 0.5]]}, "n must be a positive whole number"),
    ({"strategy": "random", "n": True, "probs": [[0.5, 0.5]]}, "n must be a positive whole number"),
    ({"strategy": "interval", "n": 2, "confidence": [0.5, 0.4]}, "strategy 'interval' needs probs"),
    ({"strategy": "disagreement", "n": 2, "confidence": [0.5, 0.4]}, "strategy 'disagreement' needs disagreement"),
    ({"strategy": "random", "n": 2}, "strategy 'random' needs confidence, disagreement or probs"),
    ({"strategy": "confidence", "n": 1, "confidence": [0.5, 0.4], "probs": [[0.5, 0.5]]},
     "the inputs disagree on the number of items"),
    ({"strategy": "random", "n": 1, "confidence": [0.5, 0.4], "exclude": [2]},
     "exclude holds position 2, outside the 2 items"),
    ({"strategy": "interval", "n": 1, "probs": [[0.5, 0.5]], "uniform_share": 0.0}, r"uniform_share must lie in \(0, 1\]"),
    ({"strategy": "interval", "n": 1, "probs": [0.5, 0.5]}, r"probs has shape \(2,\)"),
])
def test_input_errors_name_the_field_and_the_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        choose(**kwargs)
    assert caught.value.fix
