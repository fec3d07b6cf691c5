"""SER input pipeline: clips/s of fine-tuning and probe epochs against the model's own step rate.

    python benchmarks/ser_pipeline.py [--device cpu|cuda] [--size base|tiny] [--per-speaker K]
        [--batch-sizes 16 64] [--out PATH] [--key NAME]

A wav2vec2 of the real base size (random weights: the cost does not depend on them) on
real EmoDB clips, speaker fold 0 as ``examples.ser.train`` splits it. For each batch size:

- ``in_memory``: the training step alone (forward, soft cross-entropy, backward, AdamW,
  scheduler) over the training clips, every batch already padded and on the device (no
  mask when a batch has no padding, as ``train`` does): the rate the input pipeline
  should feed;
- ``pipeline``: ``examples.ser.train.fit --mode finetune`` as the tree has it, timed per
  training epoch (``run_epoch`` is wrapped; validation and checkpoints are not counted);
- ``legacy``: the loop of ``examples/ser/train.py`` at commit 9a32b97 (audio read and
  resampled in the training loop, numpy padding, an attention mask always, the frame count
  and the predictions copied to the host at every step) re-enacted with the same library
  calls, so one run shows before and after.

Probe mode: the first epoch (extracts the hidden states of the training clips and caches
them) and the epochs from the cache, for ``fit --mode probe`` and the re-enacted loop
(one clip at a time, numpy padding per batch).

Epochs after the first are pooled (``clips_per_second``); ``best_*`` is the fastest of
them. On a CPU that other work shares, compare ``cpu_seconds_per_clip`` (the work done
per clip, loader workers included), which depends far less on the share of the cores the
run was given than wall-clock figures do. Each timed span records clips/s, the CPU cores the process and its loader workers used
(``/proc``), and on a GPU the share of time it was busy (NVML through
``torch.cuda.utilization``, else ``nvidia-smi``) and the peak memory. Defaults: on a GPU
all 535 clips (395 training), batch sizes 16 and 64; on a CPU 8 clips per speaker (64
training), batch size 16. Writes ``benchmarks/results/ser_pipeline_{device}.json``, or
``--out``; ``--key`` stores the run under that key of the file, keeping its other keys.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.ser import train  # noqa: E402
from examples.ser.data import SAMPLE_RATE, load_audio, read_table, speaker_folds  # noqa: E402
from examples.ser.metrics import soft_cross_entropy  # noqa: E402
from examples.ser.model import (  # noqa: E402
    SERModel,
    hidden_states,
    load_backbone,
    save_sized_backbone,
    save_tiny_backbone,
)

CROP_S = 5.0  # train.py's default --crop-s; EmoDB's 2 s clips are never cropped
# the tree's model runs an unpadded batch without a mask, as train.py then feeds it (9a32b97's took one always)
NO_MASK = "None" in str(inspect.signature(hidden_states).parameters["sample_mask"].annotation)


# ---------------------------------------------------------------------------- monitoring


def _cpu_seconds(exclude: frozenset[int] = frozenset()) -> float:
    """CPU seconds of this process, its live descendants (loader workers) and reaped children."""
    if not Path("/proc/self/stat").exists():
        return time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    family, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        for pid, fields in stats.items():
            if int(fields[1]) == parent and pid not in family:
                family.add(pid)
                frontier.append(pid)
    own = sum((int(stats[p][11]) + int(stats[p][12])) / tick for p in family - exclude if p in stats)
    reaped = os.times()
    return own + reaped.children_user + reaped.children_system


class Monitor:
    """Wall clock, CPU time and (on a GPU) utilisation samples, read per timed span."""

    def __init__(self, dev: torch.device):
        self.dev = dev
        self.samples: list[tuple[float, float]] = []
        self.source: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._smi: subprocess.Popen[str] | None = None
        if dev.type == "cuda":
            self._start_sampling()

    def _start_sampling(self) -> None:
        try:
            torch.cuda.utilization()
            self.source = "nvml (torch.cuda.utilization)"

            def poll() -> None:
                while not self._stop.wait(0.05):
                    self.samples.append((time.perf_counter(), float(torch.cuda.utilization())))

            self._threads.append(threading.Thread(target=poll, daemon=True))
        except Exception:  # no pynvml: nvidia-smi streams a sample every 100 ms
            if shutil.which("nvidia-smi") is None:
                return
            self.source = "nvidia-smi -lms 100"
            self._smi = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          "-i", str(torch.cuda.current_device()), "-lms", "100"],
                                         stdout=subprocess.PIPE, text=True)

            def read() -> None:
                assert self._smi is not None and self._smi.stdout is not None
                for line in self._smi.stdout:
                    with contextlib.suppress(ValueError):
                        self.samples.append((time.perf_counter(), float(line.strip())))

            self._threads.append(threading.Thread(target=read, daemon=True))
        for thread in self._threads:
            thread.start()

    @property
    def _own(self) -> frozenset[int]:
        """The monitor's own nvidia-smi, not counted as the pipeline's CPU."""
        return frozenset() if self._smi is None else frozenset({self._smi.pid})

    def close(self) -> None:
        self._stop.set()
        if self._smi is not None:
            self._smi.terminate()

    def sync(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    def mark(self) -> tuple[float, float]:
        self.sync()
        return time.perf_counter(), _cpu_seconds(self._own)

    def since(self, mark: tuple[float, float], clips: int) -> dict[str, Any]:
        self.sync()
        end, cpu = time.perf_counter(), _cpu_seconds(self._own)
        seconds = end - mark[0]
        busy = [u for t, u in self.samples if mark[0] <= t <= end]
        return {"seconds": seconds, "clips": clips, "clips_per_second": clips / seconds,
                "cpu_cores": (cpu - mark[1]) / seconds,
                "gpu_busy_pct": float(np.mean(busy)) if busy else None, "gpu_samples": len(busy)}


def summary(spans: list[dict[str, Any]], skip: int = 1) -> dict[str, Any]:
    """Steady-state figures: the spans after the first ``skip`` (warm-up), pooled."""
    steady = spans[skip:] or spans
    seconds = sum(s["seconds"] for s in steady)
    clips = sum(s["clips"] for s in steady)
    busy = [s["gpu_busy_pct"] for s in steady if s["gpu_busy_pct"] is not None]
    cpu = sum(s["cpu_cores"] * s["seconds"] for s in steady)
    return {"clips_per_second": clips / seconds, "best_clips_per_second": max(s["clips_per_second"] for s in steady),
            "seconds_per_epoch": seconds / len(steady),
            "cpu_cores": cpu / seconds, "cpu_seconds_per_clip": cpu / clips,
            "gpu_busy_pct": float(np.mean(busy)) if busy else None, "spans": spans}


# ---------------------------------------------------------------------------- the three ways


def optimiser(model: SERModel, steps: int) -> tuple[Any, Any]:
    """fit's finetune optimiser and warm-up schedule."""
    groups = [{"params": model.head.parameters(), "lr": 1e-3},
              {"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": 5e-5}]
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    warmup = max(1, int(steps * 0.1))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))


def _legacy_states(backbone: Any, waves: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """model.hidden_states at 9a32b97: an attention mask always, the frame count read back to the host."""
    out = backbone(waves, attention_mask=mask.long(), output_hidden_states=True)
    states = torch.stack(out.hidden_states)
    lengths = backbone._get_feat_extract_output_lengths(mask.sum(dim=-1))
    frames = torch.arange(int(lengths.max()), device=mask.device)[None, :] < lengths[:, None]
    return states, frames[:, :states.shape[2]]


def _step(model: SERModel, optimizer: Any, scheduler: Any, waves: torch.Tensor, mask: torch.Tensor | None,
          targets: torch.Tensor, dev: torch.device, legacy: bool = False) -> torch.Tensor:
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        if legacy:
            assert mask is not None
            logits = model.head(*_legacy_states(model.backbone, waves, mask))
        else:
            logits = model(waves, mask)
        loss = soft_cross_entropy(logits.float(), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return logits


def crop(length: int, size: int, rng: np.random.Generator) -> slice:
    """The legacy loop's random window of ``size`` (the whole signal when it is shorter)."""
    if length <= size:
        return slice(0, length)
    start = int(rng.integers(0, length - size + 1))
    return slice(start, start + size)


def _pad(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The numpy padding the legacy loop did per batch."""
    out = np.zeros((len(arrays), max(len(a) for a in arrays), *arrays[0].shape[1:]), dtype=np.float32)
    mask = np.zeros(out.shape[:2], dtype=bool)
    for i, a in enumerate(arrays):
        out[i, :len(a)], mask[i, :len(a)] = a, True
    return out, mask


def in_memory(path: Path, table: Any, batch_size: int, passes: int, dev: torch.device, monitor: Monitor) -> dict[str, Any]:
    torch.manual_seed(0)
    model = SERModel(load_backbone(path), len(table.labels)).to(dev).train()
    index = np.arange(len(table.files))
    chunks = [index[i:i + batch_size] for i in range(0, len(index), batch_size)]
    batches = []
    for chunk in chunks:
        waves, mask = _pad([load_audio(table.files[i]) for i in chunk])
        batches.append((torch.from_numpy(waves).to(dev), None if NO_MASK and mask.all() else torch.from_numpy(mask).to(dev),
                        torch.tensor(table.targets[chunk], dtype=torch.float32, device=dev)))
    optimizer, scheduler = optimiser(model, (passes + 1) * len(batches))
    for batch in batches[:2]:  # warm-up, not timed
        _step(model, optimizer, scheduler, *batch, dev)
    spans = []
    for _ in range(passes):
        mark = monitor.mark()
        for batch in batches:
            _step(model, optimizer, scheduler, *batch, dev)
        spans.append(monitor.since(mark, len(table.files)))
    del model, optimizer, batches
    return summary(spans, skip=0)


def legacy_finetune(path: Path, table: Any, batch_size: int, epochs: int, dev: torch.device,
                    monitor: Monitor) -> dict[str, Any]:
    """examples/ser/train.py's finetune epoch at 9a32b97, re-enacted."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = SERModel(load_backbone(path), len(table.labels)).to(dev).train()
    n = len(table.files)
    optimizer, scheduler = optimiser(model, epochs * -(-n // batch_size))
    probs = np.zeros_like(table.targets)
    spans = []
    for _ in range(epochs):
        mark = monitor.mark()
        order = rng.permutation(n)
        for index in [order[i:i + batch_size] for i in range(0, n, batch_size)]:
            targets = torch.tensor(table.targets[index], dtype=torch.float32, device=dev)
            waves = [load_audio(table.files[i]) for i in index]
            waves = [w[crop(len(w), int(CROP_S * SAMPLE_RATE), rng)] for w in waves]
            stacked, mask = _pad(waves)
            logits = _step(model, optimizer, scheduler, torch.from_numpy(stacked).to(dev),
                           torch.from_numpy(mask).to(dev), targets, dev, legacy=True)
            probs[index] = torch.softmax(logits.float(), dim=-1).detach().cpu().numpy()
        spans.append(monitor.since(mark, n))
    del model, optimizer
    return summary(spans)


def legacy_probe(path: Path, table: Any, batch_size: int, epochs: int, dev: torch.device, monitor: Monitor,
                 cache_dir: Path) -> dict[str, Any]:
    """Probe epochs at 9a32b97, re-enacted: one clip at a time into .npy files, numpy padding per batch."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = SERModel(load_backbone(path), len(table.labels)).to(dev)
    for parameter in model.backbone.parameters():
        parameter.requires_grad = False
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=1e-3, weight_decay=1e-4)
    fps = float(model.backbone._get_feat_extract_output_lengths(torch.tensor(SAMPLE_RATE)))
    cache_dir.mkdir(parents=True, exist_ok=True)
    memory: dict[int, np.ndarray] = {}

    @torch.no_grad()
    def features(i: int) -> np.ndarray:
        if i not in memory:
            wave = torch.from_numpy(load_audio(table.files[i]))[None].to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                states, _ = _legacy_states(model.backbone, wave, torch.ones_like(wave, dtype=torch.bool))
            memory[i] = states[:, 0].float().cpu().numpy().astype(np.float16)
            np.save(cache_dir / f"{i}.npy", memory[i])
        return memory[i]

    n = len(table.files)
    spans = []
    for _ in range(epochs):
        model.train()
        model.backbone.eval()
        mark = monitor.mark()
        order = rng.permutation(n)
        for index in [order[i:i + batch_size] for i in range(0, n, batch_size)]:
            targets = torch.tensor(table.targets[index], dtype=torch.float32, device=dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                feats = [features(i) for i in index]
                feats = [f[:, crop(f.shape[1], int(CROP_S * fps), rng)] for f in feats]
                stacked, mask = _pad([np.moveaxis(f, 0, 1) for f in feats])
                states = torch.from_numpy(stacked).to(dev).permute(2, 0, 1, 3).float()
                logits = model.head(states, torch.from_numpy(mask).to(dev))
                loss = soft_cross_entropy(logits.float(), targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            torch.softmax(logits.float(), dim=-1).detach().cpu().numpy()
        spans.append(monitor.since(mark, n))
    return _probe_summary(spans)


def _probe_summary(spans: list[dict[str, Any]]) -> dict[str, Any]:
    cached = spans[1:]
    return {"first_epoch_s": spans[0]["seconds"], "first_epoch_clips_per_second": spans[0]["clips_per_second"],
            "cached_epoch_s": float(np.mean([s["seconds"] for s in cached])),
            "best_cached_epoch_s": min(s["seconds"] for s in cached),
            "cached_clips_per_second": float(np.mean([s["clips_per_second"] for s in cached])),
            "first_epoch_cpu_seconds": spans[0]["cpu_cores"] * spans[0]["seconds"],
            "cached_epoch_cpu_seconds": float(np.mean([s["cpu_cores"] * s["seconds"] for s in cached])),
            "first_epoch_gpu_busy_pct": spans[0]["gpu_busy_pct"], "spans": spans}


@contextlib.contextmanager
def timed_epochs(monitor: Monitor) -> Iterator[list[dict[str, Any]]]:
    """Time every ``train.run_epoch`` call that ``fit`` makes (training and evaluation)."""
    original: Callable[..., Any] = train.run_epoch
    spans: list[dict[str, Any]] = []

    def timed(model: Any, table: Any, *args: Any, **kwargs: Any) -> Any:
        mark = monitor.mark()
        result = original(model, table, *args, **kwargs)
        spans.append({"train": bool(kwargs.get("train")), **monitor.since(mark, len(result))})
        return result

    train.run_epoch = timed  # type: ignore[assignment]
    try:
        yield spans
    finally:
        train.run_epoch = original  # type: ignore[assignment]


def pipeline(mode: str, path: Path, csv: Path, emodb: Path, batch_size: int, epochs: int, work: Path,
             monitor: Monitor) -> dict[str, Any]:
    """``fit`` as the tree has it, every training epoch timed."""
    args = train.parser().parse_args([
        "--table", str(csv), "--audio-dir", str(emodb), "--label-column", "emotion", "--speaker-column", "speaker",
        "--backbone", str(path), "--mode", mode, "--epochs", str(epochs), "--batch-size", str(batch_size),
        "--out", str(work / f"{mode}_{batch_size}"), "--feature-cache", str(work / f"cache_{mode}_{batch_size}"), "-q"])
    with timed_epochs(monitor) as spans:
        train.fit(args)
    shutil.rmtree(work / f"cache_{mode}_{batch_size}", ignore_errors=True)
    training = [s for s in spans if s["train"]]
    evaluation = [s for s in spans if not s["train"]]
    out = summary(training) if mode == "finetune" else _probe_summary(training)
    out["evaluation_clips_per_second"] = sum(s["clips"] for s in evaluation) / sum(s["seconds"] for s in evaluation)
    return out


# ---------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", choices=["tiny", "base"], default="base")
    p.add_argument("--per-speaker", type=int, help="clips per speaker (default: all on a GPU, 8 on a CPU)")
    p.add_argument("--batch-sizes", type=int, nargs="+", help="default: 16 64 on a GPU, 16 on a CPU")
    p.add_argument("--probe-batch-size", type=int, default=16)
    p.add_argument("--emodb-dir", default=str(ROOT.parent / "shared" / "data" / "emodb"))
    p.add_argument("--out", help="default benchmarks/results/ser_pipeline_{device}.json")
    p.add_argument("--key", help="store the run under this key of --out (before, after), keeping the others")
    p.add_argument("--code", help="what code the run measured, recorded as given (a commit, 'working tree')")
    p.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's own choice); 1 keeps CPU "
                   "seconds honest on a shared machine, where a waiting thread spins")
    args = p.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no GPU")
    gpu = dev.type == "cuda"
    per_speaker = args.per_speaker if args.per_speaker is not None else (None if gpu else 8)
    sizes = args.batch_sizes or ([16, 64] if gpu else [16])
    finetune_epochs, probe_epochs, passes = (3, 4, 2) if gpu else (3, 3, 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    train.device = lambda: dev  # type: ignore[assignment]  # fit runs on the device asked for
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"ser_pipeline_{dev.type}.json"
    work = Path(tempfile.mkdtemp(prefix="ser_pipeline_"))
    monitor = Monitor(dev)
    started = time.perf_counter()
    import transformers

    run: dict[str, Any] = {
        "date": dt.date.today().isoformat(), "machine": platform.platform(), "device": dev.type,
        "gpu": torch.cuda.get_device_name(0) if gpu else None, "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "transformers": transformers.__version__, "code": args.code,
        "gpu_utilisation_source": monitor.source, "backbone": f"wav2vec2 ({args.size} size, random weights)",
        "clip_seconds": 2.0, "finetune_epochs": finetune_epochs, "probe_epochs": probe_epochs,
        "in_memory_passes": passes, "torch_threads": torch.get_num_threads(), "finetune": {}, "probe": None,
        "complete": False,
        "load_average_1min": [os.getloadavg()[0]],  # other work on the machine slows a CPU run
        "command": "python benchmarks/ser_pipeline.py " + " ".join(sys.argv[1:]),
    }

    def write() -> None:
        """The report so far: a run cut short still leaves what it measured."""
        run["wall_seconds"] = time.perf_counter() - started
        run["gpu_peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30 if gpu else None
        report: dict[str, Any] = run
        if args.key:
            report = json.loads(out.read_text()) if out.exists() else {}
            report[args.key] = run
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")

    try:
        emodb = Path(args.emodb_dir)
        labels = pd.read_csv(emodb / "labels.csv")
        if per_speaker is not None:
            labels = labels.groupby("speaker").head(per_speaker)
        csv = work / "table.csv"
        labels.to_csv(csv, index=False)
        table = read_table(csv, emodb, label_column="emotion", speaker_column="speaker")
        assert table.speakers is not None
        train_idx, val_idx, test_idx = speaker_folds(table.speakers, seed=0)[0]  # fit's fold 0
        train_table = table.subset(train_idx)
        run["clips"] = {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)}
        path = (save_tiny_backbone("wav2vec2", work / "bb") if args.size == "tiny"
                else save_sized_backbone("wav2vec2", work / "bb"))
        run["parameters_m"] = round(sum(p.numel() for p in load_backbone(path).parameters()) / 1e6, 1)
        for size in sizes:
            row: dict[str, Any] = {"in_memory": in_memory(path, train_table, size, passes, dev, monitor)}
            row["legacy"] = legacy_finetune(path, train_table, size, finetune_epochs, dev, monitor)
            row["pipeline"] = pipeline("finetune", path, csv, emodb, size, finetune_epochs, work, monitor)
            for way in ("legacy", "pipeline"):
                row[f"{way}_share_of_in_memory"] = {
                    k: row[way][f"{k}clips_per_second"] / row["in_memory"][f"{k}clips_per_second"] for k in ("", "best_")}
            run["finetune"][str(size)] = row
            write()
            print(json.dumps({f"finetune batch {size}": {k: v.get("clips_per_second", v) for k, v in row.items()}}),
                  flush=True)
        probe = {"batch_size": args.probe_batch_size,
                 "legacy": legacy_probe(path, train_table, args.probe_batch_size, probe_epochs, dev, monitor,
                                        work / "legacy_cache"),
                 "pipeline": pipeline("probe", path, csv, emodb, args.probe_batch_size, probe_epochs, work, monitor)}
        for figure in ("cached_epoch_s", "best_cached_epoch_s", "first_epoch_s", "cached_epoch_cpu_seconds"):
            probe[f"speedup_{figure}"] = probe["legacy"][figure] / probe["pipeline"][figure]
        run["probe"] = probe
        print(json.dumps({"probe": {k: v for k, v in probe.items() if k.startswith("speedup")}}), flush=True)
        run["complete"] = True
    finally:
        run["load_average_1min"].append(os.getloadavg()[0])
        monitor.close()
        shutil.rmtree(work, ignore_errors=True)
        write()
    print(f"wrote {out} ({run['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
