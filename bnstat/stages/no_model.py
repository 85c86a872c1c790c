"""Files that hold no model, and what they hold instead.

A trainer's checkpoint folder keeps the model's weights beside files of the same
extensions that are no model at all: `optimizer.pt` (an optimizer state, whose tensors
are moments of the parameters), `scheduler.pt` and `training_args.bin` (plain data or a
pickled options object, no tensor), `rng_state.pth` (random number generator states).
They are readable, so they are not errors; they hold nothing to check, so saying what
they hold is the whole report (BN013 when named, a skipped file in a folder scan).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bnstat.readers.base import RawCheckpoint, printable
from bnstat.readers.safe_pickle import Opaque
from bnstat.stages.find_state_dicts import StateDict
from bnstat.tensor_ref import TensorRef
from bnstat.wording import counted

OPTIMIZER_KEYS = ("state", "param_groups")  # what `Optimizer.state_dict()` returns
RNG_KEYS = frozenset({"python", "numpy", "cpu", "cuda", "mps", "xla", "npu", "xpu", "hpu"})
KEYS_SHOWN = 6
MAX_NODES = 2**20  # containers visited looking for an optimizer state


def what_it_holds(raw: RawCheckpoint, states: list[StateDict]) -> str | None:
    """What a file without a normalization layer holds when that is no model (None: it
    holds tensors that may be one, such as a model without BatchNorm)."""
    if not states:
        return f"it holds no tensors, only {_described(raw.root)}"
    if _only_optimizer_tensors(raw.root, states):
        return f"it holds a torch optimizer state ({', '.join(OPTIMIZER_KEYS)}), no model"
    root = raw.root
    if isinstance(root, Mapping) and set(root) <= RNG_KEYS and {"python", "cpu"} & set(root):
        return f"it holds random number generator states ({_keys(root)}), no model"
    return None


def _described(root: Any) -> str:
    """A pickle's top-level object, in a few words."""
    if isinstance(root, Opaque):
        return f"a pickled {root.global_name}"
    if isinstance(root, Mapping):
        return f"a dict ({_keys(root)})" if root else "an empty dict"
    if isinstance(root, list | tuple):
        return f"a {type(root).__name__} of {counted(len(root), 'item')}"
    kind = type(root).__name__
    return "nothing" if root is None else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _keys(mapping: Mapping[Any, Any]) -> str:
    keys = [printable(str(key), 40) for key in list(mapping)[: KEYS_SHOWN + 1]]
    return ", ".join(keys[:KEYS_SHOWN]) + (", ..." if len(keys) > KEYS_SHOWN else "")


def _only_optimizer_tensors(root: Any, states: list[StateDict]) -> bool:
    """Whether every tensor of the file sits in an optimizer state's `state`."""
    moments = {id(tensor) for tensor in _optimizer_tensors(root)}
    return bool(moments) and all(
        id(tensor) in moments for state in states for tensor in state.tensors.values()
    )


def _optimizer_tensors(root: Any) -> Iterator[TensorRef]:
    """The tensors under the `state` of every optimizer state in the tree (containers only,
    each visited once, at most MAX_NODES)."""
    stack: list[tuple[Any, bool]] = [(root, False)]
    seen: set[int] = set()
    while stack and len(seen) < MAX_NODES:
        node, in_state = stack.pop()
        if isinstance(node, TensorRef):
            if in_state:
                yield node
            continue
        if id(node) in seen or not isinstance(node, Mapping | list | tuple):
            continue
        seen.add(id(node))
        if isinstance(node, Mapping):
            optimizer = all(key in node for key in OPTIMIZER_KEYS)
            stack += [(v, in_state or (optimizer and k == "state")) for k, v in node.items()]
        else:
            stack += [(child, in_state) for child in node]
