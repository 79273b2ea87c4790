"""Devices: where a tensor's data lives.

A `Device` is a plain value (``Device.CPU``, ``Device.CUDA(0)``, ``Device.MPS``); building one
never fails and never touches hardware. Whether a device can actually hold data is the
backends' business (`embtable.backends.backend_for`), checked when a tensor is placed there
and by `embtable.set_default_device` (`embtable.backends.set_default_device`), which checks,
then records the default here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Union

from .errors import InvalidArgumentError
from .validate import integer

_KINDS = ("cpu", "cuda", "mps")


@dataclass(frozen=True)
class Device:
    """A device kind (``"cpu"``, ``"cuda"``, ``"mps"``) and, for CUDA, an ordinal."""

    kind: str
    index: int = 0

    CPU: ClassVar[Device]
    MPS: ClassVar[Device]

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InvalidArgumentError(f"unknown device kind {self.kind!r}; expected one of {_KINDS}")
        index = integer("a device number", self.index, 0)
        if self.kind != "cuda" and index != 0:
            raise InvalidArgumentError(f"only CUDA devices are numbered, got {self.kind}:{index}")
        object.__setattr__(self, "index", index)

    @staticmethod
    def CUDA(index: int = 0) -> Device:  # noqa: N802 - spelled as in the seed
        """CUDA device number `index` (>= 0)."""
        return Device("cuda", index)

    @staticmethod
    def parse(text: str) -> Device:
        """``"cpu"``, ``"mps"``, ``"cuda"`` (device 0) or ``"cuda:N"``."""
        if not isinstance(text, str):
            raise InvalidArgumentError(f"a device name must be a str, got {text!r}")
        kind, sep, number = text.strip().lower().partition(":")
        if kind == "cuda":
            if not sep:
                return Device.CUDA(0)
            if number.isascii() and number.isdigit():
                return Device.CUDA(int(number))
        elif kind in _KINDS and not sep:
            return Device(kind)
        raise InvalidArgumentError(
            f"unknown device {text!r}; expected 'cpu', 'mps', 'cuda' or 'cuda:N'"
        )

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.kind == "cuda" else self.kind

    def __repr__(self) -> str:
        return f"Device.CUDA({self.index})" if self.kind == "cuda" else f"Device.{self.kind.upper()}"


Device.CPU = Device("cpu")
Device.MPS = Device("mps")

DeviceLike = Union[Device, str, None]

_default_device = Device.CPU


def as_device(device: DeviceLike) -> Device:
    """The `Device` that `device` names (a `Device`, a name, a ``torch.device``); ``None``
    is the default device."""
    if device is None:
        return _default_device
    if isinstance(device, Device):
        return device
    if isinstance(device, str) or type(device).__module__ == "torch":  # a torch.device
        return Device.parse(str(device))
    raise InvalidArgumentError(
        f"expected a Device, a device name such as 'cuda:0', or None; got {device!r}"
    )


def use_as_default_device(device: Device) -> None:
    """Record `device` (already checked to hold data) as the default device."""
    global _default_device
    _default_device = device


def get_default_device() -> Device:
    """The device used when ``device=None`` (``Device.CPU`` unless changed)."""
    return _default_device
