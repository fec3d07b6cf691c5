"""The budget guard: a job never spends more than its budget, across runs, at any concurrency.

Each request reserves its worst-case cost (its prompt's tokens plus ``max_tokens`` per
sample) before it is sent, and settles the reservation with what it cost when it
returns. Spend (from the run directory's ledger, so earlier runs of the job count) plus
reservations never passes the limit. A request whose reservation does not fit waits
while others are in flight, since they usually cost less than reserved; it is refused
only when nothing is in flight and it still does not fit. So a job that needs more than
its budget stops within one request's worst case of the limit.

Attempts that may have been billed (a timeout, a connection dropped after the request
was sent) settle at their worst case; answers whose usage was missing or implausible
settle at a tokenizer count.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
from pathlib import Path

from llm_annotator.store.ledger import Ledger


class Budget:
    def __init__(self, limit: float | None, ledger: Ledger | None = None) -> None:
        self.limit = limit
        self.ledger = ledger if ledger is not None else Ledger(None)
        self.reserved = 0.0
        self.spent_this_run = 0.0
        self.refused = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def spent(self) -> float:
        """The job's spend, earlier runs included."""
        return self.ledger.total

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.spent >= self.limit - 1e-12

    async def reserve(self, estimate: float) -> bool:
        """Hold ``estimate`` dollars for a request; False when it can never fit."""
        if self.limit is None:
            return True
        while self.spent + self.reserved + estimate > self.limit + 1e-12:
            if self.reserved <= 1e-15:
                self.refused += 1
                return False
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        self.reserved += estimate
        return True

    def settle(self, estimate: float, actual: float, *, kind: str = "billed", estimated: bool = False) -> None:
        """Replace a reservation by what the request cost (or may have cost)."""
        if self.limit is not None:
            self.reserved = max(0.0, self.reserved - estimate)
        if actual > 0 or kind != "billed":
            self.ledger.record(actual, kind, estimated=estimated)
        self.spent_this_run += actual
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class SharedBudget(Budget):
    """The budget of a job run by several worker processes (``--workers``): the job's spend
    and every worker's reservations are two numbers in ``path``, read and changed under an
    exclusive lock, so together the workers keep the limit as one process does. A request
    that does not fit waits while any worker has one in flight."""

    FORMAT = "<dd"  # spent by the job, reserved by requests in flight

    def __init__(self, limit: float | None, ledger: Ledger, path: Path) -> None:
        super().__init__(limit, ledger)
        self.path = path

    @classmethod
    def create(cls, path: Path, spent: float) -> None:
        """The shared figures at the start of a run: the ledger's total, nothing reserved."""
        path.write_bytes(struct.pack(cls.FORMAT, spent, 0.0))

    def _change(self, spend: float = 0.0, reserve: float = 0.0, fits: float | None = None) -> tuple[bool, float, float]:
        """Under the lock: add ``spend`` and ``reserve``; with ``fits``, reserve it only when
        it fits the limit. Returns (done, spent, reserved) as they are after."""
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            spent, reserved = struct.unpack(self.FORMAT, os.pread(fd, struct.calcsize(self.FORMAT), 0))
            done = True
            if fits is not None:
                done = self.limit is None or spent + reserved + fits <= self.limit + 1e-12
                reserve = fits if done else 0.0
            spent, reserved = spent + spend, max(0.0, reserved + reserve)
            os.pwrite(fd, struct.pack(self.FORMAT, spent, reserved), 0)
            return done, spent, reserved
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @property
    def spent(self) -> float:
        return self._change()[1]

    async def reserve(self, estimate: float) -> bool:
        if self.limit is None:
            return True
        while True:
            done, _, reserved = self._change(fits=estimate)
            if done:
                self.reserved += estimate
                return True
            if reserved <= 1e-15:
                self.refused += 1
                return False
            await asyncio.sleep(0.02)  # another worker's request is in flight: it may cost less

    def settle(self, estimate: float, actual: float, *, kind: str = "billed", estimated: bool = False) -> None:
        self._change(spend=actual, reserve=-estimate if self.limit is not None else 0.0)
        super().settle(estimate, actual, kind=kind, estimated=estimated)


__all__ = ["Budget", "SharedBudget"]
