"""Results of ordinal, numeric and multi-label outputs (filled in by the kinds' figures)."""

from __future__ import annotations

from llm_annotator.outputs.result import AnnotationResult


class NumericResult(AnnotationResult):
    """A numeric output's result."""


class MultiLabelResult(AnnotationResult):
    """A multi-label output's result."""


RESULT_KINDS: dict[str, type[AnnotationResult]] = {"numeric": NumericResult, "multi_label": MultiLabelResult}

__all__ = ["RESULT_KINDS", "MultiLabelResult", "NumericResult"]
