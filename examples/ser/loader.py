"""Audio batches for training and evaluation: read in DataLoader workers, bucketed by length.

The main process decides every batch (which clips, which crop window) from its own
random generator; workers only read, resample and pad. So a run with ``workers=4`` sees
the same batches, in the same order, as one with ``workers=0``.

Bucketing ("sortish" batches, as fastai's ``SortishSampler`` and fairseq's length-ordered
batches do it): shuffle the clips, cut the order into pools of ``pool`` batches, sort
each pool by (cropped) length, cut it into batches and shuffle the batches. Padding then
costs little while every epoch still mixes clips differently. Evaluation sorts all clips
by length and never crops.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import ser_extra
from .data import SAMPLE_RATE, load_audio

with ser_extra():
    import torch
    from torch.utils.data import DataLoader, Dataset, Sampler

#: One clip of a batch: (table row, first sample or frame, end).
Entry = tuple[int, int, int]


def audio_lengths(files: Sequence[Path]) -> np.ndarray:
    """Samples per clip at 16 kHz, from the file headers (what ``load_audio`` returns)."""
    with ser_extra():
        import soundfile

    lengths = []
    for path in files:
        info = soundfile.info(str(path))
        g = math.gcd(info.samplerate, SAMPLE_RATE)
        # scipy's resample_poly returns ceil(n * up / down) samples
        lengths.append(-(-info.frames * (SAMPLE_RATE // g) // (info.samplerate // g)))
    return np.asarray(lengths, dtype=np.int64)


class LengthBuckets(Sampler[list[Entry]]):
    """Batches of clips of similar length; each clip once per epoch.

    ``rng`` given (training): a fresh shuffle, crop windows of at most ``crop`` and bucketed
    batches in random order every epoch. ``rng=None`` (evaluation): all clips sorted by
    length, whole, in a fixed order.
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, *, rng: np.random.Generator | None = None,
                 crop: int | None = None, pool: int = 50):
        if batch_size < 1:
            raise ValueError(f"batch_size is {batch_size}; it must be at least 1")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.rng, self.crop, self.pool = batch_size, rng, crop, pool

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def _windows(self) -> tuple[np.ndarray, np.ndarray]:
        starts = np.zeros(len(self.lengths), dtype=np.int64)
        stops = self.lengths.copy()
        if self.rng is not None and self.crop is not None:
            long = np.flatnonzero(self.lengths > self.crop)
            starts[long] = self.rng.integers(0, self.lengths[long] - self.crop + 1)
            stops[long] = starts[long] + self.crop
        return starts, stops

    def __iter__(self) -> Iterator[list[Entry]]:
        starts, stops = self._windows()
        size = stops - starts
        b = self.batch_size
        if self.rng is None:
            order = np.argsort(size, kind="stable")
            batches = [order[i:i + b] for i in range(0, len(order), b)]
        else:
            order = self.rng.permutation(len(size))
            batches = []
            for p in range(0, len(order), b * self.pool):
                chunk = order[p:p + b * self.pool]
                chunk = chunk[np.argsort(size[chunk], kind="stable")]
                batches += [chunk[i:i + b] for i in range(0, len(chunk), b)]
            batches = [batches[k] for k in self.rng.permutation(len(batches))]
        for batch in batches:
            yield [(int(i), int(starts[i]), int(stops[i])) for i in batch]


class Endless(Sampler[list[Entry]]):
    """``sampler``'s epochs one after another, without end.

    A loader over it never stops, so its workers read the next epoch's first batches while
    the current epoch's last ones train: with a batch large against the epoch, waiting for
    those at every epoch start cost a third of the step rate on a GPU
    (docs/benchmarks.md). The caller takes ``len(sampler)`` batches per epoch.
    """

    def __init__(self, sampler: LengthBuckets):
        self.sampler = sampler

    def __iter__(self) -> Iterator[list[Entry]]:
        while True:
            yield from self.sampler


class Clips(Dataset[tuple[int, np.ndarray]]):
    """``dataset[(row, start, stop)]``: that window of the clip, 16 kHz, normalised."""

    def __init__(self, files: Sequence[Path]):
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, entry: Entry) -> tuple[int, np.ndarray]:  # type: ignore[override]
        row, start, stop = entry
        return row, load_audio(self.files[row])[start:stop]


def collate(items: list[tuple[int, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Rows (B), waves zero-padded to the longest (B x T, float32) and the sample mask (B x T),
    ``None`` when no clip is padded."""
    longest = max(len(wave) for _, wave in items)
    waves = torch.zeros(len(items), longest)
    mask = torch.zeros(len(items), longest, dtype=torch.bool)
    for i, (_, wave) in enumerate(items):
        waves[i, :len(wave)] = torch.from_numpy(wave)
        mask[i, :len(wave)] = True
    return torch.tensor([row for row, _ in items]), waves, None if all(len(w) == longest for _, w in items) else mask


def default_workers(dev: torch.device) -> int:
    """Loader processes: none on a CPU (the model's threads use every core), else up to 8."""
    if dev.type == "cpu":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 2))


def audio_loader(files: Sequence[Path], sampler: LengthBuckets | Endless, *, workers: int = 0,
                 pin: bool = False) -> DataLoader[Any]:
    """A DataLoader that reads ``sampler``'s batches in ``workers`` processes, pinned when ``pin``.

    It draws its worker seeds from a generator of its own: a loader takes a number from
    torch's global generator each time it starts its workers, which would shift the training's dropout masks with the worker count.
    """
    return DataLoader(Clips(files), batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                      pin_memory=pin,
                      prefetch_factor=4 if workers > 0 else None, generator=torch.Generator())
