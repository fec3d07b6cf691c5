"""The MELT method end to end on MELD: relabel emotions from text cues, compare, export.

    python -m examples.melt.run_melt --split dev                     # offline: embedded model
    OPENAI_API_KEY=... python -m examples.melt.run_melt --split train --melt-filter   # GPT-4o

Steps: load a MELD split, optionally apply MELT's subset filter, annotate with
``emotion_melt`` (or ``emotion_context``), import MELD's human labels (and MELT's
published GPT-4o labels where present) as annotators, compute agreement and the
label-change table, write the HTML report, and export the soft-label dataset that
``examples.ser`` trains on. ``--plan`` prints what GPT-4o would cost on MELT's data.

With ``--audio-dir DIR`` (MELD's clips as WAV, named ``dia{Dialogue_ID}_utt{Utterance_ID}.wav``
or as ``--audio-template`` says) the job holds three annotators: the text cues (``--task``,
``-m``), the clip with the cues (``emotion_audio``) and the clip alone
(``emotion_audio_only``), both by ``--audio-model``; one report compares them with each other
and with the human labels. Rows whose clip is missing, or longer than the templates' limit
(30 s), are left out and counted (``skipped_clips.csv``)::

    python -m examples.melt.run_melt --split dev --audio-dir MELD_WAV/dev -m gpt-4o \
        --audio-model gpt-4o-audio-preview-2024-12-17
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from llm_annotator import annotate  # noqa: E402
from llm_annotator.analysis.agreement import format_report, to_json  # noqa: E402
from llm_annotator.core.errors import DataError  # noqa: E402
from llm_annotator.corpora.meld import (  # noqa: E402
    EMOTIONS,
    MELD_REPOSITORY,
    MELD_SOURCE,
    SPLITS,
    load_meld,
    melt_subset,
)
from llm_annotator.engine.plan import plan  # noqa: E402
from llm_annotator.outputs.result import AnnotationResult  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
#: MELD's clip names (its MELD.Raw archives, as mp4; converted to WAV by the user)
AUDIO_TEMPLATE = "dia{Dialogue_ID}_utt{Utterance_ID}.wav"
#: The two audio annotators: the clip with MELT's text cues, and the clip alone
AUDIO_TASKS = ("emotion_audio", "emotion_audio_only")
AUDIO_MODEL = "gpt-4o-audio-preview-2024-12-17"


def label_changes(human: list[str], llm: list[str | None]) -> pd.DataFrame:
    """Counts of human label (rows) → LLM label (columns), 'invalid' for no valid LLM label."""
    llm_named = [x if isinstance(x, str) and x else "invalid" for x in llm]
    table = pd.crosstab(pd.Series(human, name="human"), pd.Series(llm_named, name="llm"))
    rows = [e for e in EMOTIONS if e in table.index]
    cols = [e for e in EMOTIONS if e in table.columns] + [c for c in table.columns if c not in EMOTIONS]
    return table.reindex(index=rows, columns=cols, fill_value=0)


def soft_label_dataset(result, frame: pd.DataFrame) -> pd.DataFrame:
    """Per clip: file name, soft label vector (task's label order), consensus, confidence, human label;
    and for each other output of the task (MELT's loudness, pitch, rhythm/speed and emotional
    impact) its soft label, consensus and confidence as ``NAME_soft_label``, ``NAME_label``,
    ``NAME_confidence``."""
    labels = result.labels().set_index("item_id")
    order = list(result.task.labels)
    out = pd.DataFrame({
        "clip": frame["clip"], "file": frame["audio"] if "audio" in frame else frame["clip"] + ".wav",
        "speaker": frame["Speaker"],
        "Dialogue_ID": frame["Dialogue_ID"], "Utterance_ID": frame["Utterance_ID"],
        "utterance": frame["Utterance"], "human_label": frame["Emotion"],
    })
    probs = labels.loc[frame["clip"], [f"p_{x}" for x in order]].to_numpy()
    out["soft_label"] = [list(map(float, row)) for row in probs]
    out["label"] = labels.loc[frame["clip"], "label"].to_numpy()
    out["confidence"] = labels.loc[frame["clip"], "confidence"].to_numpy()
    for k, name in enumerate(order):
        out[f"p_{name}"] = probs[:, k]
    for name in result.output_names[1:]:  # MELT's other elements (loudness, pitch, ...): their own soft labels
        element = result.output(name)
        table = element.labels().set_index("item_id").loc[frame["clip"]]
        columns = [f"p_{x}" for x in element.task.labels]
        out[f"{name}_soft_label"] = [list(map(float, row)) for row in table[columns].to_numpy()]
        out[f"{name}_label"] = table["label"].to_numpy()
        out[f"{name}_confidence"] = table["confidence"].to_numpy()
    return out


def gpt4o_plan(meld_dir: Path, extra_items: int = 1794, melt_csv: Path | None = None) -> str:
    """GPT-4o cost of MELT's 7,024 train utterances (counted) and ``extra_items`` more (scaled).

    The published MELT train file gives the exact 7,024 rows; without it, the filter's.
    """
    if melt_csv is not None and melt_csv.is_file():
        subset = pd.read_csv(melt_csv)
        subset["clip"] = "dia" + subset["Dialogue_ID"].astype(str) + "_utt" + subset["Utterance_ID"].astype(str)
    else:
        subset = melt_subset(load_meld(meld_dir, "train"))
    lines = [f"GPT-4o on MELT: {len(subset)} train utterances counted, {extra_items} more scaled by the mean"]
    for k in (1, 5):
        result = plan(subset, "emotion_melt", ["gpt-4o"], samples=k, id_column="clip", cache=False).models[0]
        batch = plan(subset, "emotion_melt", ["gpt-4o"], samples=k, id_column="clip", cache=False,
                     batch=True).models[0]
        scale = (len(subset) + extra_items) / len(subset)
        lines.append(
            f"  k={k}: {result.requests} requests, {result.tokens_in} prompt tokens, "
            f"${result.cost_usd_expected:.2f} expected (${result.cost_usd_max:.2f} at most) for {len(subset)}; "
            f"${result.cost_usd_expected * scale:.2f} expected (${result.cost_usd_max * scale:.2f} at most) "
            f"for {len(subset) + extra_items}; as a batch job ${batch.cost_usd_expected:.2f} "
            f"(${batch.cost_usd_max:.2f}) and ${batch.cost_usd_expected * scale:.2f} (${batch.cost_usd_max * scale:.2f})")
    return "\n".join(lines)


def submit_or_collect(frame: pd.DataFrame, task: str, models: list[Any], out: Path,
                      options: dict[str, Any]) -> AnnotationResult | None:
    """Batch jobs: collect the running ones, else submit what is missing. None while any runs."""
    from llm_annotator.api import collect
    from llm_annotator.store.batch_state import BatchState

    running = [b for b in BatchState.load(out).batches if not b.get("collected") and b.get("status") != "abandoned"]
    if running:
        collected = collect(out, data=frame, api_base=options.get("api_base"))
        assert isinstance(collected, AnnotationResult)
        result = collected
    else:
        result = annotate(frame, task, models, batch=True, **options)
    if result.manifest["status"] == "batch_pending":
        ids = ", ".join(str(b["id"]) for b in result.manifest["batches"] if not b["collected"])
        print(f"{result.manifest['counts']['in_batch']} votes wait in batch jobs ({ids}); "
              "run the same command again later to collect them and finish")
        return None
    return result


def attach_clips(frame: pd.DataFrame, audio_dir: Path, template: str,
                 max_seconds: float | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows whose clip is a file under ``audio_dir`` no longer than ``max_seconds``, with its
    name (relative to ``audio_dir``) in ``audio``; and the rows left out (clip, file, reason, seconds)."""
    import soundfile

    try:
        names = [template.format_map(row) for row in frame.to_dict(orient="records")]
    except (KeyError, IndexError, ValueError) as exc:
        raise DataError(f"--audio-template {template!r}: {exc!r} is not a MELD column",
                        fix=f"name the file from MELD's columns, e.g. {AUDIO_TEMPLATE!r}") from exc
    keep, skipped = [], []
    for clip, name in zip(frame["clip"], names, strict=True):
        path = audio_dir / name
        reason, seconds = (None, 0.0) if path.is_file() else ("missing", float("nan"))
        if reason is None and max_seconds is not None:
            try:
                seconds = soundfile.info(str(path)).duration
            except RuntimeError:  # unreadable: the library's check names the file and the fix
                seconds = 0.0
            if seconds > max_seconds:
                reason = f"longer than {max_seconds:g} s"
        keep.append(reason is None)
        if reason is not None:
            skipped.append({"clip": clip, "file": name, "reason": reason, "seconds": round(seconds, 3)})
    kept = frame.loc[keep].copy()
    kept["audio"] = [n for n, k in zip(names, keep, strict=True) if k]
    return kept, pd.DataFrame(skipped, columns=["clip", "file", "reason", "seconds"])


def audio_annotators(model: str, api_base: str | None) -> list[dict[str, Any]]:
    """The clip-with-cues and clip-only annotators of ``model`` (named MODEL/TASK)."""
    return [{"model": model, "task": task, **({"api_base": api_base} if api_base else {})} for task in AUDIO_TASKS]


def missing_meld(meld_dir: str, error: DataError) -> str:
    """What to say when MELD's CSVs are not where ``--meld-dir`` points (they are not shipped)."""
    return (f"--meld-dir {meld_dir}: {error.message}; MELD's CSVs are not part of this repository: download "
            f"{', '.join(SPLITS.values())} from {MELD_REPOSITORY} (folder {MELD_SOURCE}) and pass their folder "
            "as --meld-dir FOLDER")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MELT end to end on MELD")
    parser.add_argument("--meld-dir", default=str(SHARED / "meld"),
                        help=f"folder with MELD's *_sent_emo.csv ({MELD_SOURCE} in {MELD_REPOSITORY}), "
                             "or a base URL of them")
    parser.add_argument("--split", default="dev", choices=["train", "dev", "test"])
    parser.add_argument("--task", default="emotion_melt", choices=["emotion_melt", "emotion_context"])
    parser.add_argument("-m", "--model", dest="models", action="append",
                        help="model(s); default gpt-4o with OPENAI_API_KEY, else local/smollm2-135m")
    parser.add_argument("-k", "--samples", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--melt-filter", action="store_true", help="keep MELT's subset only (speakers, >= 0.95 s, >= 3 words)")
    parser.add_argument("--melt-csv", default=str(SHARED / "melt" / "meld_train.csv"),
                        help="MELT's published train labels (llm_label; meld_train.csv in "
                             "https://github.com/KeiKinn/meltdataset), imported as an annotator for --split train")
    parser.add_argument("--limit", type=int, help="first N utterances only")
    parser.add_argument("--out", help="run directory (default runs/melt_SPLIT_TASK, with _audio for --audio-dir, "
                                      "under the working directory)")
    parser.add_argument("--plan", action="store_true", help="also print GPT-4o's cost on MELT's 7,024 + 1,794 utterances")
    parser.add_argument("--api-base", help="API base URL of the model(s), e.g. a vLLM server")
    parser.add_argument("--batch", action="store_true",
                        help="ask through provider batch jobs (half price, within 24 h): the first run submits, "
                             "the same command later collects and finishes")
    audio = parser.add_argument_group("audio: text, text+clip and clip-only annotators in one job")
    audio.add_argument("--audio-dir", help="folder of MELD's clips as WAV (or any format libsndfile reads); adds "
                                           "the annotators emotion_audio (cues + clip) and emotion_audio_only (clip)")
    audio.add_argument("--audio-template", default=AUDIO_TEMPLATE,
                       help=f"each clip's file under --audio-dir from MELD's columns (default {AUDIO_TEMPLATE!r}, "
                            "MELD.Raw's names with .wav)")
    audio.add_argument("--audio-model", default=AUDIO_MODEL,
                       help=f"the model that hears the clips (default {AUDIO_MODEL}); a self-hosted one as "
                            "openai/NAME with --audio-api-base")
    audio.add_argument("--audio-api-base", help="API base URL of --audio-model (default: --api-base)")
    args = parser.parse_args(argv)

    models = args.models or (["gpt-4o"] if os.environ.get("OPENAI_API_KEY") else ["local/smollm2-135m"])
    try:
        frame = load_meld(args.meld_dir, args.split)
    except DataError as exc:
        parser.error(missing_meld(args.meld_dir, exc))
    if args.melt_filter:
        frame = melt_subset(frame)
    if args.limit:
        frame = frame.head(args.limit)
    columns = ["Emotion"]
    published = Path(args.melt_csv)
    if args.split == "train" and published.is_file():  # MELT released train labels; ids repeat across splits
        melt = pd.read_csv(published)[["Dialogue_ID", "Utterance_ID", "llm_label"]]
        merged = frame.merge(melt, on=["Dialogue_ID", "Utterance_ID"], how="left")
        if merged["llm_label"].notna().any():
            frame = merged
            columns.append("llm_label")
    out = Path(args.out or Path("runs") / f"melt_{args.split}_{args.task}{'_audio' if args.audio_dir else ''}")
    annotators: list[Any] = list(models)
    data, options = frame, {"samples": args.samples, "temperature": args.temperature, "id_column": "clip",
                            "out": out, "api_base": args.api_base}
    if args.audio_dir:
        from llm_annotator.core.task import load_task

        limit = min(load_task(t).media["clip"].max_seconds or float("inf") for t in AUDIO_TASKS)
        try:
            frame, skipped = attach_clips(frame, Path(args.audio_dir), args.audio_template, limit)
        except DataError as exc:
            parser.error(str(exc))
        if frame.empty:
            parser.error(f"--audio-dir {args.audio_dir}: none of the {len(skipped)} clips is there as "
                         f"--audio-template {args.audio_template!r} names them (first: {skipped['file'].iloc[0]}); "
                         "convert MELD.Raw's mp4 clips to WAV under that folder, e.g. ffmpeg -i dia0_utt0.mp4 -vn "
                         "-ac 1 -ar 16000 dia0_utt0.wav, or give the names with --audio-template")
        if len(skipped):
            out.mkdir(parents=True, exist_ok=True)
            skipped.to_csv(out / "skipped_clips.csv", index=False)
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(skipped["reason"].value_counts().items()))
            print(f"skipped {len(skipped)} utterances whose clip is unusable ({reasons}; first: "
                  f"{skipped['file'].iloc[0]}): listed in {out / 'skipped_clips.csv'}")
        annotators += audio_annotators(args.audio_model, args.audio_api_base)
        # the templates' media field `clip` holds the file (absolute: a batch job is collected from its
        # data alone); the item id stays MELD's clip name. A clip is identified by its bytes, not its path.
        root = Path(args.audio_dir).resolve()
        data = frame.assign(item=frame["clip"], clip=[str(root / n) for n in frame["audio"]]).drop(columns="audio")
        options.update(id_column="item")
    names = [a if isinstance(a, str) else f"{a['model']}/{a['task']}" for a in annotators]
    print(f"{len(frame)} utterances of MELD {args.split}; task {args.task}; annotators {', '.join(names)}; "
          f"k={args.samples}")
    if args.plan:
        try:
            print(gpt4o_plan(Path(args.meld_dir), melt_csv=Path(args.melt_csv)))
        except DataError as exc:
            parser.error(missing_meld(args.meld_dir, exc))
    print(plan(data, args.task, annotators, samples=args.samples, id_column=options["id_column"], batch=args.batch,
               api_base=args.api_base).table())

    if args.batch:
        result = submit_or_collect(data, args.task, annotators, out, options)
        if result is None:
            return 0
    else:
        result = annotate(data, args.task, annotators, **options)
    both = result.with_columns(columns)
    figures = both.agreement(gold="Emotion")
    print(format_report(figures, gold="Emotion"))
    (out / "agreement.json").write_text(to_json(figures))

    consensus = result.labels()["label"].tolist()
    changes = label_changes(frame["Emotion"].tolist(), consensus)
    changes.to_csv(out / "label_changes.csv")
    changed = 1 - sum(changes.loc[e, e] for e in changes.index if e in changes.columns) / changes.to_numpy().sum()
    print(f"\nhuman label → LLM consensus label (share changed {changed:.4f}):\n{changes.to_string()}")
    if "llm_label" in columns:
        have = frame["llm_label"].notna()
        published_changes = label_changes(frame.loc[have, "Emotion"].tolist(), frame.loc[have, "llm_label"].tolist())
        published_changes.to_csv(out / "label_changes_published.csv")

    from llm_annotator.outputs.report import write_report

    write_report(both, out / "report.html", gold="Emotion")
    dataset = soft_label_dataset(result, frame)
    dataset.to_csv(out / "soft_labels.csv", index=False)
    with (out / "soft_labels.jsonl").open("w", encoding="utf-8") as handle:
        for record in dataset.to_dict(orient="records"):
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    print(f"\nwrote {out / 'report.html'}, {out / 'soft_labels.jsonl'} ({len(dataset)} clips), "
          f"{out / 'agreement.json'}, {out / 'label_changes.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
