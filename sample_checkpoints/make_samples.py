"""Build every sample checkpoint in this folder from scratch, deterministically.

Run from the repository root:

    python sample_checkpoints/make_samples.py

Steps: load scikit-learn's bundled 8x8 digits, convert them to uint8 pixels exactly as a
PNG holds them, split them 80/20 (stratified, fixed seed), train `digits_model.DigitsNet`
with Adam while keeping an exponential moving average of its weights, then write the
healthy checkpoint in several formats and layouts, one copy per bnstat rule with a single
planted defect, a few checkpoints bnstat must refuse or flag, and 30 training images per
class as PNGs for `bnstat recalibrate --data`. Test accuracies are printed at the end
(README.md quotes them). Seeds and thread counts are fixed, so a rerun on the same torch
version reproduces the same numbers and the same bytes, except in `legacy.pt` and the two
`pickled_*.pkl` files (their storage keys are memory addresses), `scripted.pt` and
`traced.pt` (TorchScript writes a random serialization id and lists class constants in
hash order).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from digits_model import build_model  # noqa: E402

SEED = 0
THREADS = 2
TEST_FRACTION = 0.2
EPOCHS = 40
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
EMA_DECAY = 0.999
PNGS_PER_CLASS = 30
# One key only: safetensors writes metadata in hash order, so several keys would make the
# file's bytes differ from run to run.
METADATA = {"format": "pt"}
ONNX_OPSET = 18
EXPORT_EXAMPLE = torch.zeros(2, 1, 8, 8)  # exports trace shapes only; the batch is dynamic

StateDict = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- data


class Digits(NamedTuple):
    """The split: uint8 (N, 8, 8) images, labels, and `load_digits()` indices."""

    train_pixels: np.ndarray
    train_labels: np.ndarray
    train_index: np.ndarray
    test_pixels: np.ndarray
    test_labels: np.ndarray


def load_data() -> Digits:
    """Digits as uint8 images (0..16 scaled as a PNG holds them), split 80/20, stratified."""
    digits = load_digits()
    pixels = np.round(digits.images * 255 / 16).astype(np.uint8)
    train_idx, test_idx = train_test_split(
        np.arange(len(pixels)),
        test_size=TEST_FRACTION,
        random_state=SEED,
        stratify=digits.target,
    )
    return Digits(
        pixels[train_idx],
        digits.target[train_idx],
        train_idx,
        pixels[test_idx],
        digits.target[test_idx],
    )


def to_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 images (N, 8, 8) to the model's input: float32 (N, 1, 8, 8) in 0..1."""
    return torch.from_numpy(pixels.astype(np.float32) / 255).unsqueeze(1)


# ------------------------------------------------------------------------- training


def train(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[AveragedModel, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam with a cosine schedule; an EMA of the weights is updated after every step.

    The EMA uses `AveragedModel`'s default `use_buffers=False`: it averages parameters
    only and, since torch 1.13 (pytorch/pytorch#84054), copies the live model's buffers
    on every update. Its BatchNorm statistics are therefore those of the final
    raw weights, not of the averaged weights they are paired with: the real-world defect
    that `ema_stale.pt` ships (and `torch.optim.swa_utils.update_bn` exists to fix).
    """
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(EMA_DECAY))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
    order_rng = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(x), generator=order_rng).split(BATCH_SIZE):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            ema.update_parameters(model)
        scheduler.step()
    model.eval()
    return ema, optimizer, scheduler


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in eval mode."""
    model.eval()
    return (model(x).argmax(1) == y).float().mean().item()


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def with_reset_stats(model: nn.Module) -> nn.Module:
    """A copy of the model with every BatchNorm layer back at 0/1 and 0 batches."""
    reset = copy.deepcopy(model)
    for bn in batchnorms(reset):
        bn.reset_running_stats()
    return reset


@torch.no_grad()
def with_stats_from(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy whose BatchNorm statistics are re-estimated on `x`; weights untouched.

    The plain train-mode method: reset, momentum=None (cumulative average), one pass.
    """
    estimated = with_reset_stats(model)
    layers = batchnorms(estimated)
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        bn.momentum = None
    estimated.train()
    for batch in x.split(BATCH_SIZE):
        estimated(batch)
    for bn, momentum in zip(layers, momenta, strict=True):
        bn.momentum = momentum
    return estimated.eval()


# -------------------------------------------------------------------- planted defects


def clone_state(state: StateDict) -> StateDict:
    return {key: value.clone() for key, value in state.items()}


def channel_nearest_median(values: torch.Tensor) -> int:
    """The channel whose value is closest to the layer median (the most typical one)."""
    return int((values - values.median()).abs().argmin())


def plant_non_finite(sd: StateDict) -> None:
    """An inf variance and a NaN mean in `block1.bn2`, as after a diverged fp16 run."""
    sd["block1.bn2.running_var"][2] = float("inf")
    sd["block1.bn2.running_mean"][5] = float("nan")


def plant_negative_variance(sd: StateDict) -> None:
    """A sign-flipped variance in `block2.shortcut.bn`, as after a botched merge."""
    var = sd["block2.shortcut.bn.running_var"]
    var[7] = -var[7]


def plant_untrained_stats(sd: StateDict) -> None:
    """`fc_bn` back at its initial statistics, as if added after training."""
    sd["fc_bn.running_mean"].zero_()
    sd["fc_bn.running_var"].fill_(1.0)
    sd["fc_bn.num_batches_tracked"].zero_()


def plant_dead_channel(sd: StateDict) -> None:
    """Zero weight in `block1.bn1`: one channel with a negative bias, one with a positive."""
    weight, bias = sd["block1.bn1.weight"], sd["block1.bn1.bias"]
    weight[int(torch.nonzero(bias < 0)[0])] = 0.0
    weight[int(torch.nonzero(bias > 0)[0])] = 0.0


def plant_collapsed_variance(sd: StateDict) -> None:
    """Zero variance in two channels of `block2.bn2`, as behind a dead filter."""
    sd["block2.bn2.running_var"][[4, 9]] = 0.0


def plant_collapsed_layer(sd: StateDict) -> None:
    """Zero variance in every channel of `fc_bn`, as behind a layer whose outputs all died:
    every folded scale grows alike, so no channel stands out for BN009."""
    sd["fc_bn.running_var"].zero_()


def plant_variance_outlier(sd: StateDict) -> None:
    """The most typical channel of `stem.bn` gets 1e4 times its variance (still < 65504)."""
    var = sd["stem.bn.running_var"]
    var[channel_nearest_median(var.log10())] *= 1e4
    assert var.max() < 65504


def plant_half_precision_overflow(sd: StateDict) -> None:
    """Stats of `block2.bn1` as if its input had been 255x larger (0..255 instead of 0..1)."""
    sd["block2.bn1.running_mean"] *= 255
    sd["block2.bn1.running_var"] *= 255**2
    assert sd["block2.bn1.running_var"].max() > 65504


def plant_stale_layer(sd: StateDict) -> None:
    """`block1.bn2` counted only 5% of the batches, as if frozen early in training."""
    count = sd["block1.bn2.num_batches_tracked"]
    count.fill_(round(0.05 * int(count)))


def plant_folding_scale_outlier(sd: StateDict) -> None:
    """The channel of `block2.shortcut.bn` with the median folded scale gets 500x its weight."""
    weight, var = sd["block2.shortcut.bn.weight"], sd["block2.shortcut.bn.running_var"]
    scale = weight.abs() / (var + 1e-5).sqrt()
    weight[channel_nearest_median(scale)] *= 500


def plant_dormant_channel(sd: StateDict) -> None:
    """Three channels of `block2.bn2` shifted five standard deviations below zero."""
    weight, bias = sd["block2.bn2.weight"], sd["block2.bn2.bias"]
    for channel in (1, 6, 20):
        bias[channel] = -5 * weight[channel].abs()


PLANTED: dict[str, Callable[[StateDict], None]] = {
    "bn001_non_finite.pt": plant_non_finite,
    "bn002_negative_variance.safetensors": plant_negative_variance,
    "bn003_untrained_stats.pt": plant_untrained_stats,
    "bn004_dead_channel.pt": plant_dead_channel,
    "bn005_collapsed_variance.safetensors": plant_collapsed_variance,
    "bn005_collapsed_layer.safetensors": plant_collapsed_layer,
    "bn006_variance_outlier.pt": plant_variance_outlier,
    "bn007_half_precision_overflow.safetensors": plant_half_precision_overflow,
    "bn008_stale_layer.pt": plant_stale_layer,
    "bn009_folding_scale_outlier.pt": plant_folding_scale_outlier,
    "bn010_dormant_channel.pt": plant_dormant_channel,
}


# ---------------------------------------------------------------------------- writers


class PayloadStandIn:
    """A harmless stand-in for a malicious pickle gadget: unpickling calls os.getcwd()."""

    def __reduce__(self) -> tuple[Callable[[], str], tuple[()]]:
        return (os.getcwd, ())


def save(state: StateDict, path: Path) -> None:
    """torch.save for `.pt`/`.ckpt`, safetensors (with metadata) for `.safetensors`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(state, str(path), metadata=METADATA)
    else:
        torch.save(state, path)


def cast_floats(state: StateDict, dtype: torch.dtype) -> StateDict:
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def write_pickles(out: Path, model: nn.Module, state: StateDict) -> None:
    """What projects that skip torch.save ship: `pickle.dump` of the model object, and of
    its state dict with protocol 2 (whose bytes objects go through `_codecs.encode`)."""
    with (out / "pickled_model.pkl").open("wb") as handle:
        pickle.dump(model.eval(), handle)
    with (out / "pickled_state_dict.pkl").open("wb") as handle:
        pickle.dump(state, handle, protocol=2)


def write_sharded(state: StateDict, folder: Path) -> None:
    """HF-style two-shard safetensors; the split runs through the middle of `block2.bn1`."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(state)
    split = keys.index("block2.bn1.running_mean")
    shards = {
        "model-00001-of-00002.safetensors": keys[:split],
        "model-00002-of-00002.safetensors": keys[split:],
    }
    weight_map = {}
    for shard, shard_keys in shards.items():
        save_file({k: state[k] for k in shard_keys}, str(folder / shard), metadata=METADATA)
        weight_map.update(dict.fromkeys(shard_keys, shard))
    total_size = sum(v.numel() * v.element_size() for v in state.values())
    index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def write_unreadable(healthy_pt: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = healthy_pt.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "empty.pt").write_bytes(b"")
    (folder / "not_a_checkpoint.pt").write_text(
        "This is a text file with a .pt extension, not a PyTorch checkpoint.\n"
    )


def png_subset(labels: np.ndarray) -> np.ndarray:
    """Positions of the first PNGS_PER_CLASS training images of each class."""
    return np.concatenate([np.flatnonzero(labels == c)[:PNGS_PER_CLASS] for c in range(10)])


def write_pngs(data: Digits, folder: Path) -> None:
    """The `png_subset` of the training images as digits/<class>/<load_digits() index>.png."""
    for i in png_subset(data.train_labels):
        path = folder / str(data.train_labels[i]) / f"{data.train_index[i]:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.train_pixels[i]).save(path)


def no_batchnorm_state() -> StateDict:
    """A small untrained MLP on flattened 8x8 digits, without any normalisation."""
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    return mlp.state_dict()


def write_all(
    out: Path,
    model: nn.Module,
    ema: AveragedModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    reset: nn.Module,
    inverted: nn.Module,
) -> None:
    healthy = model.state_dict()
    save(healthy, out / "healthy.pt")
    save(healthy, out / "healthy.safetensors")
    for name, plant in PLANTED.items():
        state = clone_state(healthy)
        plant(state)
        save(state, out / name)
    steps = int(healthy["stem.bn.num_batches_tracked"])
    torch.save(
        {
            "epoch": EPOCHS - 1,
            "global_step": steps,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": {"model." + k: v for k, v in healthy.items()},
            "optimizer_states": [optimizer.state_dict()],
            "lr_schedulers": [scheduler.state_dict()],
            "hyper_parameters": argparse.Namespace(lr=LEARNING_RATE, batch_size=BATCH_SIZE),
        },
        out / "lightning.ckpt",
    )
    save({"module." + k: v for k, v in healthy.items()}, out / "ddp.pt")
    torch.save({"model": healthy, "ema": ema.state_dict()}, out / "ema_stale.pt")
    save(cast_floats(healthy, torch.float16), out / "healthy_fp16.safetensors")
    save(cast_floats(healthy, torch.bfloat16), out / "healthy_bf16.safetensors")
    torch.jit.script(model.eval()).save(str(out / "scripted.pt"))
    torch.jit.trace(model.eval(), EXPORT_EXAMPLE).save(str(out / "traced.pt"))
    write_pickles(out, model, healthy)
    torch.save(healthy, out / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(model, out / "full_module.pt")
    write_sharded(healthy, out / "sharded")
    torch.save({"state_dict": healthy, "note": PayloadStandIn()}, out / "pickle_payload.pt")
    save(no_batchnorm_state(), out / "no_batchnorm.safetensors")
    save(reset.state_dict(), out / "stats_reset.safetensors")
    save(inverted.state_dict(), out / "stats_inverted.safetensors")
    write_unreadable(out / "healthy.pt", out / "unreadable")
    write_exports(out, model, reset)


# ---------------------------------------------------------------------------- exports


def export_onnx(model: nn.Module, path: Path) -> None:
    """torch's TorchScript-based exporter without constant folding: BatchNormalization
    nodes stay, with the statistics as initializers (equal ones shared through Identity
    nodes); input `image` with a dynamic batch axis."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated, still shipped
        torch.onnx.export(
            model.eval(),
            (EXPORT_EXAMPLE,),
            path,
            dynamo=False,
            do_constant_folding=False,
            opset_version=ONNX_OPSET,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )


def export_onnx_folded(model: nn.Module, path: Path) -> None:
    """The torch.export-based exporter, whose graph optimizer folds every BatchNorm layer
    into the convolution or matrix product before it; one file, no external data."""
    torch.onnx.export(
        model.eval(),
        (EXPORT_EXAMPLE,),
        path,
        dynamo=True,
        external_data=False,
        opset_version=ONNX_OPSET,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=2)}},
        verbose=False,
    )


def export_program(model: nn.Module, path: Path) -> None:
    """torch.export of the eval-mode model with a dynamic batch, saved as a `.pt2` archive."""
    program = torch.export.export(
        model.eval(),
        (EXPORT_EXAMPLE,),
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=2)}},
    )
    torch.export.save(program, path)


def fold_statistics(source: Path, path: Path) -> None:
    """`source` with every BatchNormalization's statistics folded into its scale and bias,
    mean 0 and variance 1, as Keras-to-ONNX converters write them. The scale also carries
    sqrt(1 + eps), so the model computes exactly what `source` does."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    stored = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}

    def values(name: str) -> np.ndarray:
        while name not in stored:  # equal tensors are stored once, read through Identity
            name = producers[name].input[0]
        return stored[name]

    for node in [n for n in graph.node if n.op_type == "BatchNormalization"]:
        eps = next(a.f for a in node.attribute if a.name == "epsilon")
        gamma, beta, mean, var = (values(name) for name in node.input[1:5])
        scale = gamma / np.sqrt(var + eps)
        folded = (scale * np.sqrt(1 + eps), beta - mean * scale, 0 * mean, 0 * var + 1)
        names = [f"{node.name}/{leaf}" for leaf in ("scale", "bias", "mean", "var")]
        graph.initializer.extend(
            numpy_helper.from_array(v.astype(np.float32), n)
            for v, n in zip(folded, names, strict=True)
        )
        node.input[1:5] = names
    while True:  # drop what nothing reads any more: Identity nodes, old initializers
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        unused = [n for n in graph.node if n.op_type == "Identity" and n.output[0] not in read]
        if not unused:
            break
        for node in unused:
            graph.node.remove(node)
    for tensor in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(tensor)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_exports(out: Path, model: nn.Module, reset: nn.Module) -> None:
    export_onnx(model, out / "digits.onnx")
    fold_statistics(out / "digits.onnx", out / "digits_folded_stats.onnx")
    export_onnx(reset, out / "digits_stats_reset.onnx")
    export_onnx_folded(model, out / "digits_folded.onnx")
    export_program(model, out / "digits.pt2")
    export_program(reset, out / "digits_stats_reset.pt2")


def onnx_accuracy(path: Path, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of an exported ONNX model in onnxruntime."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": x.numpy()})
    return float((logits.argmax(1) == y.numpy()).mean())


# ------------------------------------------------------------------------------- main


def main() -> None:
    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    data = load_data()
    x_train, y_train = to_input(data.train_pixels), torch.from_numpy(data.train_labels)
    x_test, y_test = to_input(data.test_pixels), torch.from_numpy(data.test_labels)

    model = build_model()
    ema, optimizer, scheduler = train(model, x_train, y_train)
    reset = with_reset_stats(model)
    inverted = with_stats_from(model, 1 - x_train)

    write_all(HERE, model, ema, optimizer, scheduler, reset, inverted)
    write_pngs(data, HERE / "digits")

    x_pngs = x_train[png_subset(data.train_labels)]
    print(f"images: {len(x_train)} train, {len(x_test)} test, {len(x_pngs)} written as PNGs")
    print("test accuracy in eval mode:")
    for name, net in (
        ("healthy.pt", model),
        ("ema_stale.pt, 'ema'", ema.module),
        ("  same, stats re-estimated on the training set", with_stats_from(ema.module, x_train)),
        ("stats_reset.safetensors", reset),
        ("  same, stats re-estimated on digits/*.png", with_stats_from(reset, x_pngs)),
        ("stats_inverted.safetensors", inverted),
    ):
        print(f"  {name:<48} {100 * accuracy(net, x_test, y_test):6.2f}%")
    onnx_files = ("digits.onnx", "digits_folded.onnx", "digits_folded_stats.onnx")
    for onnx_file in (*onnx_files, "digits_stats_reset.onnx"):
        print(
            f"  {onnx_file + ' (onnxruntime)':<48} "
            f"{100 * onnx_accuracy(HERE / onnx_file, x_test, y_test):6.2f}%"
        )


if __name__ == "__main__":
    main()
