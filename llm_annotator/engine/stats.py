"""What one run counts, as it goes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunStats:
    requested_votes: int = 0
    resumed_votes: int = 0
    cached_votes: int = 0
    new_votes: int = 0
    not_issued: int = 0               # not asked: the budget was spent
    stopped: int = 0                  # not asked: the annotator met an error no retry can mend
    in_batch: int = 0
    batch_answers: int = 0
    requests: int = 0
    failed_requests: int = 0
    cost_estimated: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    log_repaired: bool = False
    stale_dropped: int = 0
    cache_write_failed: int = 0       # answers the cache could not store (they are in the votes)
    failed_before: int = 0            # failed requests of earlier runs, asked again by this one
    reparsed: int = 0                 # resumed votes judged otherwise by the current parsing rules
    cache_corrupted: int = 0
    n_unsupported: list[str] = field(default_factory=list)
    fatal: dict[str, str] = field(default_factory=dict)      # annotator -> the error that stopped it
    examples: dict[str, str] = field(default_factory=dict)   # error kind -> its first message this run

    def example(self, kind: str, text: str) -> None:
        """Remember the first message of each kind of failure (shown at the end of a run)."""
        if kind not in self.examples:
            self.examples[kind] = " ".join(text.split())[:200]


__all__ = ["RunStats"]
