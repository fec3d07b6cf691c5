"""Demonstrations chosen per item: k labelled examples from a pool, put in the prompt.

A task declares them in its front matter::

    demonstrations:
      pool: train_sent_emo.csv   # relative to the data file's folder (or media_root), or absolute
      label: Emotion             # the pool's gold label column
      k: 4
      select: stratified         # or: similar
      text_fields: [Utterance]   # what "similar" compares (default: the template's fields)
      id_column: Sr No.          # the pool's ids, recorded per vote (default: a hash of the row)
      seed: 0                    # another seed draws other examples

and loops over them in the body (``{% for demo in demonstrations %}``); each is the pool
row's fields plus ``label`` (the gold label, read as one of the task's labels) and
``pool_id``. The examples are rendered into the messages, so the prompt hash, and with
it the request fingerprint, covers them: a changed example re-asks exactly the items
that were shown it.

Selection is deterministic: a random generator seeded by sha256 of the seed and the
item id, so a re-run (or another worker) picks the same examples. The item itself is
never shown: a pool row whose id equals the item id, or whose text (``text_fields``,
case and spaces folded) equals the item's, is left out.

- ``stratified``: one example per label in turn, labels in a random order, each example
  drawn at random within its label, until k are chosen (k below the number of labels:
  k distinct labels; a label without examples is skipped; a pool smaller than k gives
  all its rows). The chosen are shown in a random order.
- ``similar``: the k pool rows most similar to the item, the most similar shown last
  (next to the item). Offline, cosine similarity of TF-IDF vectors of the words
  (smooth idf, ``log((1 + n) / (1 + df)) + 1``, as scikit-learn's ``TfidfVectorizer``;
  Salton & Buckley 1988); ties are broken by the item's seeded order. With an
  embedding function (``compile_prompt(..., embed=...)``), cosine similarity of the
  embeddings instead.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llm_annotator.core.data import read_table, row_hash
from llm_annotator.core.errors import ConfigError, DataError
from llm_annotator.core.readers import Row

#: Texts to vectors: what an embedding model does (``providers.embeddings.embedder``).
Embed = Callable[[list[str]], Sequence[Sequence[float]]]

_WORD = re.compile(r"\w+")
_CACHED_ITEMS = 100_000  # choices kept per prompt; a choice is recomputed (identically) when evicted


class DemoSpec(BaseModel):
    """The ``demonstrations`` field of a task's front matter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pool: str
    label: str
    k: int = Field(default=4, ge=1, le=64)
    select: Literal["stratified", "similar"] = "stratified"
    text_fields: tuple[str, ...] = ()
    id_column: str | None = None
    seed: int = 0
    embedding_model: str | None = None

    @field_validator("pool", "label")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("text_fields", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


@dataclass(frozen=True)
class Pool:
    """The labelled examples: rows, their gold labels and ids, and indexes for selection."""

    source: str
    rows: list[Row]
    labels: list[str]
    ids: list[str]
    texts: list[str]
    by_label: dict[str, np.ndarray]       # label -> row indices
    by_id: dict[str, list[int]]
    by_text: dict[str, list[int]]
    _index: dict[str, Any] = field(default_factory=dict, repr=False)  # lazily built similarity index

    def excluded(self, item_id: str, text: str) -> set[int]:
        """The pool rows that are the item itself: same id, or same text."""
        return {*self.by_id.get(item_id, ()), *self.by_text.get(_key(text), ())}


def resolve_pool(spec: DemoSpec, root: Path | None) -> Path:
    """The pool file: absolute, or relative to ``root`` (the data file's folder or media_root)."""
    path = Path(spec.pool).expanduser()
    if not path.is_absolute():
        path = (root if root is not None else Path.cwd()) / path
    if not path.is_file():
        raise DataError(f"demonstrations pool {path} does not exist",
                        fix="give the pool's path in the front matter (demonstrations: {pool: PATH}), absolute or "
                            "relative to the data file's folder (or media_root=)")
    return path


def load_pool(spec: DemoSpec, root: Path | None, fields: Iterable[str], labels: Sequence[str],
              aliases: Mapping[str, str], text_fields: Sequence[str]) -> Pool:
    """Read and check the pool: it needs the template's ``fields``, the text fields and the
    label column; every label must be one of ``labels`` (or an alias of one)."""
    path = resolve_pool(spec, root)
    rows, names, source = read_table(path)
    needed = [*sorted(fields), *text_fields, spec.label, *([spec.id_column] if spec.id_column else [])]
    missing = [name for name in dict.fromkeys(needed) if name not in names]
    if missing:
        raise DataError(f"demonstrations pool {source} lacks column {missing[0]!r} (the template and the "
                        f"demonstrations need {', '.join(dict.fromkeys(needed))})",
                        fix="give the pool the data's fields and its gold label column, or correct "
                            "demonstrations.label / text_fields / id_column")
    canonical = {label.casefold(): label for label in labels}
    canonical.update({alias.casefold(): target for alias, target in aliases.items()})
    gold: list[str] = []
    ids: list[str] = []
    seen: dict[str, int] = {}
    for n, row in enumerate(rows, start=1):
        value = row.get(spec.label)
        text = "" if value is None else str(value).strip()
        label = canonical.get(text.casefold()) if labels else text
        if not label:
            raise DataError(f"demonstrations pool {source} row {n}: label {value!r} in column {spec.label!r} is "
                            + ("empty" if not text else f"not one of {', '.join(labels)}"),
                            fix="correct or drop the row, or add an alias for it to the task")
        gold.append(label)
        pool_id = str(row.get(spec.id_column)) if spec.id_column else row_hash(row)
        if pool_id in seen:
            if spec.id_column:
                raise DataError(f"demonstrations pool {source} rows {seen[pool_id]} and {n}: duplicate id "
                                f"{pool_id!r} in column {spec.id_column!r}", fix="make the pool's ids unique")
            pool_id = f"{pool_id}~{n}"
        seen[pool_id] = n
        ids.append(pool_id)
    texts = [text_of(row, text_fields) for row in rows]
    by_label: dict[str, list[int]] = defaultdict(list)
    by_id: dict[str, list[int]] = defaultdict(list)
    by_text: dict[str, list[int]] = defaultdict(list)
    for i, (label, pool_id, text) in enumerate(zip(gold, ids, texts, strict=True)):
        by_label[label].append(i)
        by_id[pool_id].append(i)
        if spec.id_column is None:  # the data's id of a row without an id column is this hash too
            by_id[pool_id.split("~")[0]].append(i)
        by_text[_key(text)].append(i)
    order = [label for label in labels if label in by_label] + sorted(set(by_label) - set(labels))
    return Pool(source=source, rows=rows, labels=gold, ids=ids, texts=texts,
                by_label={label: np.asarray(by_label[label]) for label in order},
                by_id=dict(by_id), by_text=dict(by_text))


def text_of(row: Mapping[str, Any], text_fields: Sequence[str]) -> str:
    return " ".join("" if row.get(f) is None else str(row.get(f)) for f in text_fields)


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _rng(seed: int, item_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def stratified(pool: Pool, k: int, rng: np.random.Generator, excluded: set[int]) -> list[int]:
    """k pool rows, one label after another (labels in a random order), each drawn at
    random within its label; shown in a random order."""
    labels = list(pool.by_label)
    order = [labels[i] for i in rng.permutation(len(labels))]
    draws = {label: iter(pool.by_label[label][rng.permutation(len(pool.by_label[label]))]) for label in order}
    chosen: list[int] = []
    while len(chosen) < k and draws:
        for label in list(order):
            if len(chosen) == k:
                break
            pick = next((int(i) for i in draws[label] if int(i) not in excluded), None)
            if pick is None:  # this label has no example left
                order.remove(label)
                del draws[label]
            else:
                chosen.append(pick)
    return [chosen[i] for i in rng.permutation(len(chosen))]


def _tfidf(pool: Pool) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, float]]:
    """An inverted index of the pool's l2-normalised TF-IDF vectors: word -> (rows, weights)."""
    counts = [_counts(text) for text in pool.texts]
    df: dict[str, int] = defaultdict(int)
    for c in counts:
        for word in c:
            df[word] += 1
    n = len(counts)
    idf = {word: math.log((1 + n) / (1 + d)) + 1 for word, d in df.items()}
    postings: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for i, c in enumerate(counts):
        weights = {word: tf * idf[word] for word, tf in c.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        for word, w in weights.items():
            postings[word][0].append(i)
            postings[word][1].append(w / norm)
    index = {word: (np.asarray(rows), np.asarray(ws)) for word, (rows, ws) in postings.items()}
    return index, idf


def _counts(text: str) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for word in _WORD.findall(text.casefold()):
        out[word] += 1
    return out


def lexical_scores(pool: Pool, text: str) -> np.ndarray:
    """Cosine similarity of the text's TF-IDF vector with every pool row's."""
    if "tfidf" not in pool._index:
        pool._index["tfidf"] = _tfidf(pool)
    index, idf = pool._index["tfidf"]
    query = {word: tf * idf[word] for word, tf in _counts(text).items() if word in idf}
    norm = math.sqrt(sum(w * w for w in query.values())) or 1.0
    scores = np.zeros(len(pool.rows))
    for word, w in query.items():
        rows, weights = index[word]
        scores[rows] += weights * (w / norm)
    return scores


def embedding_scores(pool: Pool, text: str, embed: Embed) -> np.ndarray:
    """Cosine similarity of the text's embedding with every pool row's (pool embedded once)."""
    if "embeddings" not in pool._index:
        vectors = [v for start in range(0, len(pool.texts), 256)
                   for v in _vectors(embed, pool.texts[start:start + 256], pool.source)]
        pool._index["embeddings"] = _normalised(np.asarray(vectors, dtype=float))
    [query] = _vectors(embed, [text], pool.source)
    return pool._index["embeddings"] @ _normalised(np.asarray([query], dtype=float))[0]


def _vectors(embed: Embed, texts: list[str], source: str) -> list[Sequence[float]]:
    vectors = list(embed(texts))
    if len(vectors) != len(texts):
        raise ConfigError(f"the embedding function gave {len(vectors)} vectors for {len(texts)} texts of "
                          f"the demonstrations pool {source}", fix="return one vector per text, in order")
    return vectors


def _normalised(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def similar(scores: np.ndarray, k: int, rng: np.random.Generator, excluded: set[int]) -> list[int]:
    """The k highest scores (ties in the seeded order), the highest last."""
    order = rng.permutation(len(scores))
    ranked = order[np.argsort(-scores[order], kind="stable")]
    chosen = [int(i) for i in ranked[:k + len(excluded)] if int(i) not in excluded][:k]
    return chosen[::-1]


class Selector:
    """Chooses an item's demonstrations from a pool, remembering recent choices."""

    def __init__(self, spec: DemoSpec, pool: Pool, text_fields: Sequence[str], embed: Embed | None) -> None:
        if spec.embedding_model and embed is None:
            raise ConfigError(f"demonstrations.embedding_model {spec.embedding_model!r} needs an embedding "
                              "function, which this run was not given",
                              fix="pass compile_prompt(task, embed=embedder(MODEL)) from "
                                  "llm_annotator.providers.embeddings, or drop embedding_model for the "
                                  "offline lexical similarity")
        self.spec = spec
        self.pool = pool
        self.text_fields = tuple(text_fields)
        self.embed = embed if spec.select == "similar" else None
        self._chosen: OrderedDict[tuple[str, str], list[int]] = OrderedDict()

    def choose(self, row: Mapping[str, Any], item_id: str) -> list[int]:
        """Pool row indices shown to this item, in the order shown."""
        text = text_of(row, self.text_fields)
        key = (item_id, text)
        if key in self._chosen:
            self._chosen.move_to_end(key)
            return self._chosen[key]
        rng = _rng(self.spec.seed, item_id)
        excluded = self.pool.excluded(item_id, text)
        if self.spec.select == "stratified":
            chosen = stratified(self.pool, self.spec.k, rng, excluded)
        else:
            scores = (embedding_scores(self.pool, text, self.embed) if self.embed is not None
                      else lexical_scores(self.pool, text))
            chosen = similar(scores, self.spec.k, rng, excluded)
        self._chosen[key] = chosen
        if len(self._chosen) > _CACHED_ITEMS:
            self._chosen.popitem(last=False)
        return chosen

    def variables(self, chosen: Sequence[int]) -> list[dict[str, Any]]:
        """What the template sees: each example's pool fields, its ``label`` and ``pool_id``."""
        return [{**self.pool.rows[i], "label": self.pool.labels[i], "pool_id": self.pool.ids[i]} for i in chosen]


__all__ = ["DemoSpec", "Embed", "Pool", "Selector", "lexical_scores", "load_pool", "resolve_pool",
           "similar", "stratified"]
