"""What every reader returns: the checkpoint's object tree with lazy tensors in it."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def printable(text: str, limit: int = 500) -> str:
    """Text from a file made safe to print: control characters escaped, length bounded.

    Names in a checkpoint (globals, keys, archive members) can hold terminal escape
    sequences or newlines that forge output lines (a CI annotation, say); what bnstat
    prints of them goes through here.
    """
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class CheckpointFormat(str, enum.Enum):
    """File formats bnstat reads; the values are the `format` field of the JSON report."""

    TORCH_ZIP = "torch-zip"
    TORCH_LEGACY = "torch-legacy"
    SAFETENSORS = "safetensors"
    TORCHSCRIPT = "torchscript"
    PT2 = "pt2"
    ONNX = "onnx"


@dataclass(frozen=True)
class ModuleConstants:
    """What a file knows about a normalization module beyond its tensors."""

    kind: str  # class name, e.g. "BatchNorm2d" or "InstanceNorm2d"
    eps: float | None = None
    momentum: float | None = None


@dataclass
class RawCheckpoint:
    """A checkpoint as read: nested containers, placeholder objects and `TensorRef`s.

    `module_classes` maps a TorchScript class name to the constants its code declares.
    `closers` release the file handles that the lazy tensors read from.
    """

    path: Path
    format: CheckpointFormat
    root: Any
    refused_globals: tuple[str, ...] = ()
    module_classes: dict[str, ModuleConstants] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()

    def __enter__(self) -> RawCheckpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
