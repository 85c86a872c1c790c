"""`bnstat.recalibrate`: the exact statistics of `bnstat recalibrate`, for a module in memory.

The caller's module is recalibrated in place on the caller's batches: only its BatchNorm
buffers change, as with `torch.optim.swa_utils.update_bn`, and nothing is written. In an
initialised `torch.distributed` process group every rank passes its own shard; the
moments are summed over the group once per front (`moments.ChannelMoments.synchronize`),
so every rank ends with the statistics one process would compute on all the data.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from bnstat.api.arguments import require
from bnstat.api.on_data import CallFn, Data, Device, opened, progress_bar
from bnstat.errors import ArgumentError

if TYPE_CHECKING:
    from torch import nn

    from bnstat.report.recalibration import RecalibrationReport

MethodName = Literal["exact", "train-average"]


def recalibrate(
    model: nn.Module,
    data: Data,
    *,
    method: MethodName = "exact",
    device: Device = None,
    call_fn: CallFn | None = None,
    input_key: str | None = None,
    max_samples: int | None = None,
    verify: bool = True,
    cache_mb: int | None = None,
    progress: bool = False,
) -> RecalibrationReport:
    """Re-estimate the BatchNorm statistics of `model` on `data`, in place.

    `method="exact"`: for every BatchNorm layer, the mean and unbiased variance of its
    input over all of `data` when the model runs in eval mode with the new statistics
    (what it will see at inference), independent of the batch size; about one forward
    pass (the model is captured as a graph and run in segments), or one pass per front
    of layers where it cannot be captured. `"train-average"` is the classic training-mode
    average (`update_bn`), for comparison.

    `data` is any re-iterable of batches (a `DataLoader`, a list, a function returning a
    new iterator). It is iterated once: its batches are kept for later passes while they
    fit in `cache_mb` (default 2048, shared with cached activations); beyond that, later
    passes iterate it again and must give the same batches (else `DataError`). A batch is
    a tensor, a tuple or list whose first element is the input (`(images, labels)`), a
    mapping read at `input_key`, or anything `call_fn(model, batch)` runs (it gets the
    unwrapped model; the tensors it passes to the model are moved to `device`).
    `max_samples` stops after that many samples. `verify` measures how far the new
    statistics are from eval-mode consistency (`report.consistency`) by running the whole
    model again on one batch in 16 (at least one), kept from the first pass.

    The model keeps its device (`device=None` runs it where it is; another device is
    used for the call only), dtype, train/eval flags and parameters; wrappers
    (`AveragedModel`, DDP, `torch.compile`) are unwrapped and the statistics land in the
    wrapped model. Inside an initialised `torch.distributed` group every rank passes its
    shard and all end with identical statistics.

    Returns the recalibration report (`report.layers`: per layer the shift, the
    variance ratio and the remaining mismatch; `report.strategy`: how it ran). Writes
    no file and prints nothing, unless `progress=True` asks for a bar on stderr. Raises
    `TypeError`/`ValueError` for wrong arguments, `bnstat.errors.BnstatError`s for data
    or a model that cannot be run (the statistics are then left as they were).
    """
    from bnstat.execution import distributed
    from bnstat.recalibrate.estimator import Method, estimate
    from bnstat.recalibrate.reporting import recalibration_report

    chosen = _method(method)
    require("verify", verify, bool, "a bool")
    start = time.perf_counter()
    run = opened(
        model, data, device=device, call_fn=call_fn, input_key=input_key,
        max_samples=max_samples, cache_mb=cache_mb,
    )  # fmt: skip
    with run as fed, progress_bar(progress) as bar:
        result = estimate(fed.model, fed.data, Method(chosen), 1, verify, bar, fed.budget)
        eps = {layer.name: layer.eps for layer in fed.model.runner.layers}
    return recalibration_report(
        result, fed.summary(), eps, checkpoint=f"<{type(model).__name__}>", output=None,
        origin=fed.origin, seconds=time.perf_counter() - start,
        processes=distributed.processes(),
    )  # fmt: skip


def _method(method: str) -> str:
    require("method", method, str, "'exact' or 'train-average'")
    if method not in ("exact", "train-average"):
        raise ArgumentError("method", f"must be exact or train-average, not {method!r}")
    return method
