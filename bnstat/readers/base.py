"""What every reader returns: the checkpoint's object tree with lazy tensors in it."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bnstat.errors import CheckpointError
from bnstat.location import Location
from bnstat.readers.followers import Follower


def printable(text: str, limit: int = 500) -> str:
    """Text from a file made safe to print: control characters escaped, length bounded.

    Names in a checkpoint (globals, keys, archive members) can hold terminal escape
    sequences or newlines that forge output lines (a CI annotation, say); what bnstat
    prints of them goes through here.
    """
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_JSON_VALUES = 2**21  # ~10 per tensor: 200,000 tensors, each parsed value ~100 bytes


def parse_json(text: bytes, what: str) -> Any:
    """JSON from a file, refused when it holds so many values that parsing it is a bomb."""
    values = text.count(b",") + text.count(b"[") + text.count(b"{")
    if values > MAX_JSON_VALUES:
        raise CheckpointError(f"{what} holds over {MAX_JSON_VALUES} JSON values: refused")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # ValueError covers decoding and int limits
        raise CheckpointError(f"corrupt {what}: {str(err)[:200]}") from err


class CheckpointFormat(str, enum.Enum):
    """File formats bnstat reads, and the objects in memory the library reads like them;
    the values are the `format` field of the JSON report."""

    TORCH_ZIP = "torch-zip"
    TORCH_LEGACY = "torch-legacy"
    SAFETENSORS = "safetensors"
    TORCHSCRIPT = "torchscript"
    PT2 = "pt2"
    ONNX = "onnx"
    PICKLE = "pickle"  # a plain Python pickle (`pickle.dump`) holding torch tensors
    MODULE = "module"  # an nn.Module in memory (`bnstat.check(model)`)
    STATE_DICT = "state-dict"  # a mapping of tensors in memory


@dataclass(frozen=True)
class ModuleConstants:
    """What a file knows about a normalization module beyond its tensors."""

    kind: str | None  # class name, e.g. "BatchNorm2d" or "InstanceNorm2d"
    eps: float | None = None
    momentum: float | None = None
    follower: Follower | None = None  # what reads its output, where the file has a graph

    def merged(self, other: ModuleConstants) -> ModuleConstants:
        """These constants, with what they leave unknown taken from `other`."""
        return ModuleConstants(
            self.kind or other.kind,
            self.eps if self.eps is not None else other.eps,
            self.momentum if self.momentum is not None else other.momentum,
            self.follower or other.follower,
        )


@dataclass
class RawCheckpoint:
    """A checkpoint as read: nested containers, placeholder objects and `TensorRef`s.

    `module_classes` maps a TorchScript class name to the constants its code declares;
    `layer_modules` maps a layer's key prefix to the constants the file records for it
    (a torch.export program's batch_norm calls, say). `closers` release the file handles
    that the lazy tensors read from.
    """

    path: Location  # a file, or a URL (printed without its secrets)
    format: CheckpointFormat
    root: Any
    refused_globals: tuple[str, ...] = ()
    module_classes: dict[str, ModuleConstants] = field(default_factory=dict)
    layer_modules: dict[str, ModuleConstants] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def local_path(self) -> Path:
        """The file on this machine, for the commands that run, copy or rewrite it whole
        (they fetch a URL to a temporary file first: `remote.download`)."""
        if isinstance(self.path, Path):
            return self.path
        if self.path.state.local is None:
            raise CheckpointError(f"{self.path}: this needs the file fetched whole first")
        return self.path.state.local

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()

    def __enter__(self) -> RawCheckpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
