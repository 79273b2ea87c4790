"""`EmbeddingOptions` and `BagOptions`: everything besides the table that shapes a lookup or
a pooled lookup, validated once."""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from typing import Any

from ..errors import InvalidArgumentError
from ..validate import flag, positive, positive_int

MAX_NORM_MODES = ("renorm", "clip")
BAG_MODES = ("sum", "mean", "max")


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
    def checked(cls, num_embeddings: int, **options: Any) -> EmbeddingOptions:
        """Validated options (keyword arguments named as the fields, defaults for the rest)
        for a table of `num_embeddings` rows; a negative `padding_idx` is normalised
        (``-1`` -> ``num_embeddings - 1``)."""
        values = {f.name: options.pop(f.name, f.default) for f in fields(cls)}
        if options:
            raise InvalidArgumentError(f"unknown options {sorted(options)}")
        return cls(**cls._validated(num_embeddings, values))

    @classmethod
    def _validated(cls, num_embeddings: int, values: dict[str, Any]) -> dict[str, Any]:
        if values["max_norm_mode"] not in MAX_NORM_MODES:
            raise InvalidArgumentError(f"max_norm_mode must be one of {MAX_NORM_MODES}, "
                                       f"got {values['max_norm_mode']!r}")
        return {**values,
                "padding_idx": _padding_idx(values["padding_idx"], num_embeddings),
                "max_norm": None if values["max_norm"] is None else positive("max_norm", values["max_norm"]),
                "norm_type": positive("norm_type", values["norm_type"]),
                "scale_grad_by_freq": flag("scale_grad_by_freq", values["scale_grad_by_freq"]),
                "sparse": flag("sparse", values["sparse"])}

    @classmethod
    def sized(cls, num_embeddings: Any, embedding_dim: Any, **options: Any) -> tuple[int, int, EmbeddingOptions]:
        """A table's size and options validated together: ``(rows, dim, options)``, each of
        the first two an int >= 1 (else `InvalidArgumentError` naming it), the options as
        `checked` gives them for that many rows."""
        rows = positive_int("num_embeddings", num_embeddings)
        dim = positive_int("embedding_dim", embedding_dim)
        return rows, dim, cls.checked(rows, **options)

    def non_defaults(self) -> dict[str, Any]:
        """The options that differ from their defaults, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}


@dataclass(frozen=True)
class BagOptions(EmbeddingOptions):
    """The options of `EmbeddingBag` (which documents them): `Embedding`'s, and how bags
    reduce and how their offsets read."""

    mode: str = "mean"
    include_last_offset: bool = False

    @classmethod
    def _validated(cls, num_embeddings: int, values: dict[str, Any]) -> dict[str, Any]:
        if values["mode"] not in BAG_MODES:
            raise InvalidArgumentError(f"mode must be one of {BAG_MODES}, got {values['mode']!r}")
        return {**super()._validated(num_embeddings, values),
                "include_last_offset": flag("include_last_offset", values["include_last_offset"])}


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


class OptionProperties:
    """The options every table layer has, read from its `_options` (an `EmbeddingOptions`)."""

    _options: EmbeddingOptions

    @property
    def padding_idx(self) -> int | None:
        """The padding row (normalised to >= 0), or None: it gets no gradient and is left
        out of bags."""
        return self._options.padding_idx

    @property
    def max_norm(self) -> float | None:
        """The largest norm a row may have (a quantized table's rows were limited to it
        before quantizing), or None."""
        return self._options.max_norm

    @property
    def norm_type(self) -> float:
        """The p of the p-norm used with `max_norm`."""
        return self._options.norm_type


class BagProperties:
    """The options of a pooled lookup, read from a bag layer's `_options` (a `BagOptions`)."""

    _options: BagOptions

    @property
    def mode(self) -> str:
        """How a bag reduces: ``"sum"``, ``"mean"`` or ``"max"``."""
        return self._options.mode

    @property
    def include_last_offset(self) -> bool:
        """Whether `offsets` end with the end of the last bag (CSR)."""
        return self._options.include_last_offset
