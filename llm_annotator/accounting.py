"""What a run spends and counts: the budget guard and the run's statistics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Budget:
    """Stops issuing requests before ``limit`` dollars would be exceeded.

    Each request reserves its worst-case cost (prompt tokens plus ``max_tokens`` per
    choice) before it is sent; the reservation is replaced by the billed cost when it
    returns. Spend plus reservations never passes the limit, under any concurrency.
    """

    limit: float | None
    spent: float = 0.0
    reserved: float = 0.0
    refused: int = 0

    def reserve(self, estimate: float) -> bool:
        if self.limit is None:
            return True
        if self.spent + self.reserved + estimate > self.limit + 1e-12:
            self.refused += 1
            return False
        self.reserved += estimate
        return True

    def settle(self, estimate: float, actual: float) -> None:
        if self.limit is not None:
            self.reserved -= estimate
        self.spent += actual



@dataclass
class RunStats:
    requested_votes: int = 0
    resumed_votes: int = 0
    cached_votes: int = 0
    new_votes: int = 0
    not_issued: int = 0
    in_batch: int = 0
    batch_answers: int = 0
    requests: int = 0
    failed_requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    log_repaired: bool = False
    stale_dropped: int = 0
    cache_corrupted: int = 0
    n_unsupported: list[str] = field(default_factory=list)


__all__ = ["Budget", "RunStats"]
