"""`EmbeddingOptions`: everything besides the table that shapes a lookup, validated once."""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from typing import Any

from ..errors import InvalidArgumentError
from ..validate import flag, positive

MAX_NORM_MODES = ("renorm", "clip")


@dataclass(frozen=True)
class EmbeddingOptions:
    """The options of `Embedding` (which documents them). Build with `checked`."""

    padding_idx: int | None = None
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    sparse: bool = False
    max_norm_mode: str = "renorm"

    @classmethod
    def checked(cls, num_embeddings: int, padding_idx: Any = None, max_norm: Any = None,
                norm_type: Any = 2.0, scale_grad_by_freq: Any = False, sparse: Any = False,
                max_norm_mode: Any = "renorm") -> EmbeddingOptions:
        """Validated options for a table of `num_embeddings` rows; a negative `padding_idx`
        is normalised (``-1`` -> ``num_embeddings - 1``)."""
        if max_norm_mode not in MAX_NORM_MODES:
            raise InvalidArgumentError(f"max_norm_mode must be one of {MAX_NORM_MODES}, got {max_norm_mode!r}")
        return cls(
            padding_idx=_padding_idx(padding_idx, num_embeddings),
            max_norm=None if max_norm is None else positive("max_norm", max_norm),
            norm_type=positive("norm_type", norm_type),
            scale_grad_by_freq=flag("scale_grad_by_freq", scale_grad_by_freq),
            sparse=flag("sparse", sparse),
            max_norm_mode=max_norm_mode,
        )

    def non_defaults(self) -> dict[str, Any]:
        """The options that differ from their defaults, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}


def _padding_idx(value: Any, num_embeddings: int) -> int | None:
    if value is None:
        return None
    try:
        index = operator.index(value)
    except TypeError:
        index = num_embeddings  # reported as out of range below
    if isinstance(value, bool) or not -num_embeddings <= index < num_embeddings:
        raise InvalidArgumentError(f"padding_idx must be an int in [{-num_embeddings}, "
                                   f"{num_embeddings}) for {num_embeddings} rows, got {value!r}")
    return index % num_embeddings
