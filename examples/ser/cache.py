"""Probe mode's cache: every layer's hidden states per clip, extracted once, kept on the device.

``fill`` extracts the clips it has not seen with the frozen backbone in length-sorted
batches (audio read in DataLoader workers; each clip's states equal the ones it has alone,
see ``model.hidden_states``) and keeps them on the device as one tensor of frames,
``frames`` (L x F x H, float16: the frames of every clip one after the other), with each
clip's ``offset`` and ``length`` in frames. ``batch`` indexes that tensor into a padded
batch on the device, so an epoch from the cache never pads or copies features on the host.

With a ``directory`` every clip is also written as ``KEY.npy`` (L x T x H, float16, KEY a
hash of the clip's path under a hash of the backbone's name), and a later run reads those
files instead of extracting again. Memory: (layers + 1) x frames x hidden x 2 bytes, about
13 x 50 x 768 x 2 ≈ 1 MB per second of audio for a base model, on the GPU when there is one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from . import ser_extra
from .data import SAMPLE_RATE
from .loader import Entry, LengthBuckets, audio_lengths, audio_loader
from .model import hidden_states

with ser_extra():
    import torch


def _save(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file and a rename: a killed run leaves no half file."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FeatureCache:
    """Hidden states of every layer per clip, computed once with the frozen backbone."""

    def __init__(self, backbone: Any, backbone_id: str, directory: Path | None, dev: torch.device, *,
                 batch_size: int = 8, workers: int = 0, dtype: torch.dtype = torch.float16):
        self.backbone, self.dev, self.dtype = backbone, dev, dtype
        self.batch_size, self.workers = batch_size, workers
        self.directory = None if directory is None else Path(directory) / hashlib.sha256(backbone_id.encode()).hexdigest()[:16]
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        config = backbone.config
        self.layers, self.hidden = config.num_hidden_layers + 1, config.hidden_size
        self.frames = torch.empty(self.layers, 0, self.hidden, dtype=dtype, device=dev)
        self.offset = np.zeros(0, dtype=np.int64)  # per slot, in frames
        self.length = np.zeros(0, dtype=np.int64)
        self.slot: dict[Path, int] = {}
        self.computed = 0  # clips extracted (not read from the directory)

    @property
    def frames_per_second(self) -> float:
        return float(self.backbone._get_feat_extract_output_lengths(torch.tensor(SAMPLE_RATE)))

    def _file(self, path: Path) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24] + ".npy")

    def fill(self, files: Sequence[Path]) -> np.ndarray:
        """Extract (or read) every clip not yet held; returns each file's slot."""
        new = [p for p in dict.fromkeys(files) if p not in self.slot]
        if new:
            stored = [p for p in new if (f := self._file(p)) is not None and f.exists()]
            missing = [p for p in new if p not in set(stored)]
            lengths = [np.load(self._file(p), mmap_mode="r").shape[1] for p in stored]  # type: ignore[arg-type]
            if missing:
                samples = torch.from_numpy(audio_lengths(missing))
                lengths += self.backbone._get_feat_extract_output_lengths(samples).tolist()
            self._grow([*stored, *missing], np.asarray(lengths, dtype=np.int64))
            for path in stored:
                self._put(path, torch.from_numpy(np.load(self._file(path))))  # type: ignore[arg-type]
            self._extract(missing)
        return np.array([self.slot[p] for p in files], dtype=np.int64)

    def _grow(self, paths: list[Path], lengths: np.ndarray) -> None:
        start = self.frames.shape[1]
        grown = torch.empty(self.layers, start + int(lengths.sum()), self.hidden, dtype=self.dtype, device=self.dev)
        grown[:, :start] = self.frames
        self.frames = grown
        self.offset = np.concatenate([self.offset, start + np.cumsum(lengths) - lengths])
        self.length = np.concatenate([self.length, lengths])
        first = len(self.slot)
        self.slot.update({p: first + k for k, p in enumerate(paths)})

    def _put(self, path: Path, states: torch.Tensor) -> None:
        s = self.slot[path]
        if states.shape[1] != self.length[s]:
            raise RuntimeError(f"{path}: {states.shape[1]} frames of hidden states, expected {self.length[s]}; "
                               f"fix: delete {self._file(path) or 'the cache'} and run again")
        self.frames[:, self.offset[s]:self.offset[s] + self.length[s]] = states.to(self.dev, self.dtype)

    @torch.no_grad()
    def _extract(self, files: list[Path]) -> None:
        if not files:
            return
        sampler = LengthBuckets(audio_lengths(files), self.batch_size)
        loader = audio_loader(files, sampler, workers=self.workers, pin=self.dev.type == "cuda")
        with ThreadPoolExecutor(max_workers=2) as writer:  # .npy files written while the next batch runs
            written = []
            dtype = next(self.backbone.parameters()).dtype  # waves in the backbone's precision
            for rows, waves, mask in loader:
                waves = waves.to(self.dev, dtype, non_blocking=True)
                mask = None if mask is None else mask.to(self.dev, non_blocking=True)
                with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.dev.type == "cuda"):
                    states, frames = hidden_states(self.backbone, waves, mask)
                kept = states.to(self.dtype)
                host = kept.cpu() if self.directory is not None else None  # one copy per batch
                for b, (row, n) in enumerate(zip(rows.tolist(), frames.sum(dim=-1).tolist(), strict=True)):
                    self._put(files[row], kept[:, b, :n])
                    self.computed += 1
                    if host is not None:
                        written.append(writer.submit(_save, self._file(files[row]), host[:, b, :n].numpy()))
            for future in written:
                future.result()  # a failed write (disk full) is an error, not a silently missing file

    def batch(self, slots: np.ndarray, entries: list[Entry]) -> tuple[torch.Tensor, torch.Tensor]:
        """States (L x B x T x H, float32) and frame mask (B x T) of ``entries`` (row, first frame, end),
        rows indexing ``slots``; padding repeats a clip's last frame, masked out."""
        rows, start, stop = (np.array(column, dtype=np.int64) for column in zip(*entries, strict=True))
        size = stop - start
        steps = np.arange(int(size.max()))
        index = (self.offset[slots[rows]] + start)[:, None] + np.minimum(steps[None, :], size[:, None] - 1)
        mask = torch.from_numpy(steps[None, :] < size[:, None]).to(self.dev, non_blocking=True)
        states = self.frames[:, torch.from_numpy(index).to(self.dev, non_blocking=True)]
        return states.float(), mask
