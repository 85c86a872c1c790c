"""The module inside the wrappers a training script puts around its model.

`AveragedModel` (SWA and EMA), `DistributedDataParallel`, `DataParallel` and
`torch.compile`'s `OptimizedModule` call the module they wrap and hold no BatchNorm
layer of their own, but they get in the way of the sweep: `AveragedModel.forward(*args,
**kwargs)` hides the signature from torch.fx and torch.export, DDP adds collectives (and
buffer broadcasts) to every call, and a compiled module compiles on its first call, for
minutes. The runner works on the innermost module instead; its buffers are the
wrapper's, so the new statistics land in the model the caller holds. The attributes
passed on the way (`module.`, `_orig_mod.`) are the prefix the wrapper adds to the keys
of its state dict. Wrappers are known by class name (subclasses too), so that none of
their packages is imported to look.
"""

from __future__ import annotations

from torch import nn

WRAPPERS = {
    "torch.optim.swa_utils.AveragedModel": "module",
    "torch.nn.parallel.distributed.DistributedDataParallel": "module",
    "torch.nn.parallel.data_parallel.DataParallel": "module",
    "torch._dynamo.eval_frame.OptimizedModule": "_orig_mod",
}
MAX_WRAPPERS = 16


def _wrapped_at(module: nn.Module) -> str | None:
    """The attribute holding the module a wrapper wraps (None: not a wrapper)."""
    for cls in type(module).__mro__:
        attribute = WRAPPERS.get(f"{cls.__module__}.{cls.__qualname__}")
        if attribute is not None and isinstance(getattr(module, attribute, None), nn.Module):
            return attribute
    return None


def unwrapped(module: nn.Module) -> tuple[nn.Module, str]:
    """The innermost wrapped module, and the key prefix of the wrappers around it."""
    prefix = ""
    for _ in range(MAX_WRAPPERS):
        attribute = _wrapped_at(module)
        if attribute is None:
            break
        module, prefix = getattr(module, attribute), f"{prefix}{attribute}."
    return module, prefix
