"""A self-supervised speech backbone with a learned weighted sum of its layers and a small head.

Any ``transformers`` speech backbone loads by name or path through ``AutoModel``
(wav2vec2, HuBERT, WavLM, data2vec-audio). Layer drop is set to 0 (with it, skipped
layers emit no hidden state and the weighted sum breaks); the CNN feature encoder is
always frozen. The head: softmax-weighted sum of all hidden states → Linear → ReLU →
dropout → mean over valid frames → Linear to K classes.

A padded batch gives every clip the hidden states it has alone (``masked_padding``): the
attention masks the padding, and the two other steps that look across time see only each
clip's own frames: the GroupNorm of the first convolution in wav2vec2-base-style encoders
(``feat_extract_norm="group"``) takes its statistics over them, and a stack of positional
convolutions (data2vec-audio) sees zeros after a clip's end, as it does alone. Without
that, padding shifts the normalisation, which is why transformers advises against batching
such models with padding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import ser_extra

with ser_extra():
    import torch
    from torch import nn


def load_backbone(name: str | Path) -> nn.Module:
    """The backbone by hub name or local path: the same call for pretrained and tiny models."""
    with ser_extra():
        from transformers import AutoModel

    model = AutoModel.from_pretrained(str(name), layerdrop=0.0)
    model.config.layerdrop = 0.0
    for parameter in model.feature_extractor.parameters():  # the CNN encoder stays frozen
        parameter.requires_grad = False
    return model


def frame_mask(backbone: nn.Module, sample_mask: torch.Tensor, frames: int) -> torch.Tensor:
    """Which of ``frames`` output frames come from real samples (not padding)."""
    lengths = backbone._get_feat_extract_output_lengths(sample_mask.sum(dim=-1))
    return torch.arange(frames, device=sample_mask.device)[None, :] < lengths[:, None]


def _group_norm(norm: nn.GroupNorm, x: torch.Tensor, valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """GroupNorm of ``x`` (B x C x T) with each row's mean and variance over its ``valid`` steps.

    ``y = (x − μ_bg) / √(σ²_bg + ε) · γ_c + β_c``, μ and σ² (biased) over the channels of
    group g and the valid steps of row b (Wu & He 2018, "Group Normalization"); computed in
    at least float32 (as autocast runs GroupNorm), returned in ``dtype``.
    """
    b, c, t = x.shape
    g = norm.num_groups
    xg = x.to(torch.promote_types(x.dtype, torch.float32)).reshape(b, g, c // g, t)
    weight = valid[:, None, None, :t].to(xg.dtype)
    count = weight.sum(dim=-1, keepdim=True).clamp(min=1) * (c // g)
    mean = (xg * weight).sum(dim=(2, 3), keepdim=True) / count
    var = ((xg - mean).square() * weight).sum(dim=(2, 3), keepdim=True) / count
    y = ((xg - mean) * torch.rsqrt(var + norm.eps)).reshape(b, c, t)
    if norm.affine:
        y = y * norm.weight.to(y.dtype)[None, :, None] + norm.bias.to(y.dtype)[None, :, None]
    return y.to(dtype)


@contextlib.contextmanager
def masked_padding(backbone: nn.Module, sample_mask: torch.Tensor) -> Iterator[None]:
    """While inside, the backbone's steps across time ignore each clip's padding (see above)."""
    config: Any = backbone.config
    hooks = []

    def steps_below(limit: torch.Tensor, n: int) -> torch.Tensor:
        return torch.arange(n, device=limit.device)[None, :] < limit[:, None]

    lengths = sample_mask.sum(dim=-1)
    for k, layer in enumerate(getattr(getattr(backbone, "feature_extractor", None), "conv_layers", [])):
        lengths = torch.div(lengths - config.conv_kernel[k], config.conv_stride[k], rounding_mode="floor") + 1
        norm = getattr(layer, "layer_norm", None)
        if isinstance(norm, nn.GroupNorm):
            def normalise(module: Any, args: tuple[torch.Tensor, ...], output: torch.Tensor,
                          valid: torch.Tensor = lengths) -> torch.Tensor:
                return _group_norm(module, args[0], steps_below(valid, args[0].shape[-1]), output.dtype)

            hooks.append(norm.register_forward_hook(normalise))
    # stacked positional convolutions (B x H x T between layers): zero after each clip's end
    for layer in getattr(getattr(getattr(backbone, "encoder", None), "pos_conv_embed", None), "layers", []):
        def zero_padding(module: Any, args: tuple[torch.Tensor, ...], output: torch.Tensor,
                         valid: torch.Tensor = lengths) -> torch.Tensor:
            return output * steps_below(valid, output.shape[-1])[:, None, :].to(output.dtype)

        hooks.append(layer.register_forward_hook(zero_padding))
    try:
        yield
    finally:
        for handle in hooks:
            handle.remove()


def hidden_states(backbone: nn.Module, waves: torch.Tensor,
                  sample_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """All hidden states stacked (L x B x T x H) and the frame mask (B x T).

    ``sample_mask=None`` says the batch has no padding: the backbone then runs without an
    attention mask (the same result, and its fastest attention).
    """
    if sample_mask is None:
        out = backbone(waves, output_hidden_states=True)
        states = torch.stack(out.hidden_states)
        return states, torch.ones(states.shape[1:3], dtype=torch.bool, device=states.device)
    with masked_padding(backbone, sample_mask):
        out = backbone(waves, attention_mask=sample_mask.long(), output_hidden_states=True)
    states = torch.stack(out.hidden_states)
    return states, frame_mask(backbone, sample_mask, states.shape[2])


class Head(nn.Module):
    """Learned layer weights, Linear-ReLU-dropout per frame, masked mean pooling, Linear to K."""

    def __init__(self, n_layers: int, hidden: int, n_classes: int, width: int = 256, dropout: float = 0.2):
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))
        self.project = nn.Sequential(nn.Linear(hidden, width), nn.ReLU(), nn.Dropout(dropout))
        self.out = nn.Linear(width, n_classes)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.layer_logits, dim=0)
        mixed = torch.einsum("l,lbth->bth", weights, states)
        frames = self.project(mixed)
        m = mask.unsqueeze(-1).to(frames.dtype)
        pooled = (frames * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return self.out(pooled)


class SERModel(nn.Module):
    def __init__(self, backbone: nn.Module, n_classes: int, width: int = 256, dropout: float = 0.2):
        super().__init__()
        self.backbone = backbone
        config: Any = backbone.config
        self.head = Head(config.num_hidden_layers + 1, config.hidden_size, n_classes, width, dropout)

    def forward(self, waves: torch.Tensor, sample_mask: torch.Tensor | None) -> torch.Tensor:
        states, mask = hidden_states(self.backbone, waves, sample_mask)
        return self.head(states, mask)


TINY = {
    "wav2vec2": "Wav2Vec2",
    "hubert": "Hubert",
    "wavlm": "WavLM",
    "data2vec-audio": "Data2VecAudio",
}


def save_tiny_backbone(kind: str, directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny, randomly initialised backbone of ``kind`` that ``load_backbone`` reads.

    For tests and speed checks where the hub cannot be reached: the loading code path is
    the one pretrained weights take.
    """
    with ser_extra():
        import transformers

    prefix = TINY[kind]
    config = getattr(transformers, f"{prefix}Config")(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, num_feat_extract_layers=3, layerdrop=0.1)
    torch.manual_seed(seed)
    model = getattr(transformers, f"{prefix}Model")(config)
    path = Path(directory)
    model.save_pretrained(path)
    return path


def save_sized_backbone(kind: str, directory: str | Path, *, large: bool = False) -> Path:
    """A randomly initialised backbone of the real base (or large) size, for speed measurements."""
    with ser_extra():
        import transformers

    prefix = TINY[kind]
    sizes = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
             "intermediate_size": 4096} if large else {}
    model = getattr(transformers, f"{prefix}Model")(getattr(transformers, f"{prefix}Config")(**sizes))
    model.save_pretrained(Path(directory))
    return Path(directory)
