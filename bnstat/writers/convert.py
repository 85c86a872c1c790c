"""Write recalibrated statistics into the other format family (torch <-> safetensors).

Used when `--output`'s extension asks for a format other than the input's. The state
dict is written anew with the model's own key names (wrapper prefixes and nesting are
not carried over, they have no meaning in the other format), every tensor in its stored
dtype and the BatchNorm buffers replaced.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from bnstat.atomic import atomic_output
from bnstat.errors import ModelError
from bnstat.execution.model_options import torch_tensor
from bnstat.readers.base import RawCheckpoint
from bnstat.stages.find_state_dicts import StateDict
from bnstat.writers.target import Patch, output_is_safetensors


def _replaced(original: torch.Tensor, patch: Patch) -> torch.Tensor:
    wide = torch.from_numpy(patch.values).reshape(original.shape)
    new = wide.to(original.dtype)
    if original.is_floating_point() and bool((torch.isinf(new) & torch.isfinite(wide)).any()):
        raise ModelError(f"{patch.key}: the new statistics overflow {original.dtype}")
    return new


def write_converted(
    raw: RawCheckpoint, state: StateDict, patches: list[Patch], output: Path
) -> None:
    tensors = {key: torch_tensor(ref) for key, ref in state.tensors.items()}
    for patch in patches:
        tensors[patch.key] = _replaced(tensors[patch.key], patch)
    with atomic_output(output, like=raw.local_path) as temporary:
        if output_is_safetensors(output, raw):
            save_file(
                {k: v.contiguous() for k, v in tensors.items()},
                str(temporary),
                metadata={"format": "pt"},
            )
        else:
            torch.save(tensors, temporary)
