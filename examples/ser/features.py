"""Offline baseline features that need no pretrained weights: eGeMAPS or log-mel statistics."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from . import ser_extra
from .data import SAMPLE_RATE, load_audio


def logmel_stats(wave: np.ndarray, n_mels: int = 40) -> np.ndarray:
    """Mean and standard deviation of 40 log-mel bands and of their deltas (160 values)."""
    n_fft, hop = 400, 160
    if len(wave) < n_fft:
        wave = np.pad(wave, (0, n_fft - len(wave)))
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(mel(20), mel(SAMPLE_RATE / 2), n_mels + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)
    bank = np.zeros((n_mels, len(bins)))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        bank[m] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
    logmel = np.log(power @ bank.T + 1e-10)
    delta = np.diff(logmel, axis=0, prepend=logmel[:1])
    return np.concatenate([logmel.mean(0), logmel.std(0), delta.mean(0), delta.std(0)]).astype(np.float32)


def egemaps(path: Path) -> np.ndarray:
    """The 88 eGeMAPS v02 functionals (Eyben et al. 2016) computed by openSMILE."""
    with ser_extra():
        import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    return smile.process_signal(load_audio(path, normalise=False), SAMPLE_RATE).to_numpy(dtype=np.float32)[0]


def features(files: list[Path], kind: str, cache_dir: Path | None = None) -> np.ndarray:
    """One feature vector per file, cached on disk by file path and kind."""
    rows = []
    for path in files:
        cached = None
        if cache_dir is not None:
            key = hashlib.sha256(f"{kind}:{path.resolve()}".encode()).hexdigest()[:24]
            cached = cache_dir / f"{key}.npy"
            if cached.exists():
                rows.append(np.load(cached))
                continue
        row = egemaps(path) if kind == "egemaps" else logmel_stats(load_audio(path, normalise=False))
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, row)
        rows.append(row)
    return np.stack(rows)
