"""Split a job across machines by item-hash ranges, and merge the run directories back.

``--shard i/N`` keeps the items whose id hashes into range i of N: the split depends on
the item ids only, so every machine computes the same partition without talking to the
others, and adding rows to the data moves no existing item to another shard.
``llm_annotator.outputs.merge`` joins the shards' run directories back into one.
"""

from __future__ import annotations

import hashlib

from llm_annotator.core.errors import ConfigError


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, total = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r} is not I/N", fix="write e.g. --shard 0/4 (shards 0 to N-1)") from None
    if total < 1 or not 0 <= index < total:
        raise ConfigError(f"--shard {text!r}: the index must be in 0..N-1", fix="write e.g. --shard 0/4")
    return index, total


def shard_of(item_id: str, total: int) -> int:
    """Which of ``total`` equal hash ranges the item falls in."""
    value = int(hashlib.sha256(item_id.encode()).hexdigest()[:15], 16)
    return value * total >> 60


__all__ = ["parse_shard", "shard_of"]
