"""Find the BatchNorm layers of a state dict: key prefixes with `running_mean` and
`running_var`; and which of a file's state dicts are models worth reporting.

Key names are all a state dict has, so a layer is any prefix holding both running
statistics; `weight`, `bias` and `num_batches_tracked` join it when present and of the
right size. This catches BatchNorm1d/2d/3d, SyncBatchNorm, FrozenBatchNorm2d,
non-affine layers and InstanceNorm with running stats alike (the file's module classes,
when it has them, say which is which).
"""

from __future__ import annotations

from dataclasses import dataclass

from bnstat.errors import CheckpointError, NoModelError, UnsafeCheckpointError
from bnstat.readers.base import ModuleConstants, RawCheckpoint, printable
from bnstat.readers.pickle_risk import executes_code
from bnstat.stages.find_state_dicts import StateDict, find_state_dicts
from bnstat.stages.no_model import what_it_holds
from bnstat.tensor_ref import TensorRef

STAT_NAMES = ("running_mean", "running_var")
MAX_MODELS = 1024  # state dicts with normalization layers in one file
MAX_CHANNELS = 2**22  # in all layers of a file: ~10x the largest real models; ~500 MB of work
AFFINE_NAMES = ("weight", "bias")
COUNT_NAME = "num_batches_tracked"


@dataclass(frozen=True)
class LayerRefs:
    """The tensors of one normalization layer, not yet read."""

    name: str
    running_mean: TensorRef
    running_var: TensorRef
    weight: TensorRef | None
    bias: TensorRef | None
    num_batches_tracked: TensorRef | None
    module: ModuleConstants | None

    @property
    def channels(self) -> int:
        return self.running_mean.numel


def _split(key: str) -> tuple[str, str]:
    prefix, _, leaf = key.rpartition(".")
    return prefix, leaf


def find_layers(state: StateDict) -> list[LayerRefs]:
    """Every normalization layer of a state dict, in the state dict's order."""
    groups: dict[str, dict[str, TensorRef]] = {}
    for key, tensor in state.tensors.items():
        prefix, leaf = _split(key)
        if leaf in (*STAT_NAMES, *AFFINE_NAMES, COUNT_NAME):
            groups.setdefault(prefix, {})[leaf] = tensor
    return [
        _layer(prefix, members, state.modules.get(prefix))
        for prefix, members in groups.items()
        if all(name in members for name in STAT_NAMES)
    ]


def _layer(name: str, members: dict[str, TensorRef], module: ModuleConstants | None) -> LayerRefs:
    mean, var = members["running_mean"], members["running_var"]
    if mean.numel != var.numel:
        raise CheckpointError(
            f"layer {name or '(top level)'}: running_mean has {mean.numel} values but "
            f"running_var has {var.numel}"
        )

    def matching(leaf: str) -> TensorRef | None:
        tensor = members.get(leaf)
        return tensor if tensor is not None and tensor.numel == mean.numel else None

    count = members.get(COUNT_NAME)
    return LayerRefs(
        name=printable(name),  # printed in every report: no escape sequences from the file
        running_mean=mean,
        running_var=var,
        weight=matching("weight"),
        bias=matching("bias"),
        num_batches_tracked=count if count is not None and count.numel == 1 else None,
        module=module,
    )


def models_in(raw: RawCheckpoint) -> list[tuple[StateDict, list[LayerRefs]]]:
    """The state dicts worth reporting: those with layers, else the largest one.

    A file that holds no model (`no_model`) raises `NoModelError` saying what it holds,
    or `UnsafeCheckpointError` when its pickle also calls code: the globals are named.
    """
    states = find_state_dicts(raw)
    models = [(state, find_layers(state)) for state in states]
    with_layers = [(state, refs) for state, refs in models if refs]
    if len(with_layers) > MAX_MODELS:
        raise CheckpointError(
            f"the file holds {len(with_layers)} state dicts with normalization layers, over "
            f"the limit of {MAX_MODELS}: refused"
        )
    contents = None if with_layers else what_it_holds(raw, states)
    if contents is not None:
        code = [name for name in raw.refused_globals if executes_code(name)]
        if code:
            calls = ", ".join(code)
            raise UnsafeCheckpointError(f"{contents}; its pickle calls {calls} (refused, not run)")
        raise NoModelError(contents)
    return with_layers or [max(models, key=lambda model: len(model[0].tensors))]


def models_to_read(raw: RawCheckpoint) -> list[tuple[StateDict, list[LayerRefs]]]:
    """`models_in`, refused when their layers hold over MAX_CHANNELS channels in all:
    views of one storage make many channels cheap to ask for, and costly to read."""
    models = models_in(raw)
    channels = sum(ref.channels for _, refs in models for ref in refs)
    if channels > MAX_CHANNELS:
        raise CheckpointError(
            f"the file's normalization layers hold {channels} channels in all, over the "
            f"limit of {MAX_CHANNELS}"
        )
    return models
