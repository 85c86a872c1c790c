"""Hand-built ONNX models and an independent look at what their BatchNorm layers see.

Test modules import this after `pytest.importorskip("onnx.helper")`, so the ONNX tests
skip cleanly where the `onnx` extra is not installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_checkpoints"
CHANNELS = 4
SHAPE = (2, 5, 5)  # one sample: channels, height, width
STORAGES = ("initializer", "constant", "value_floats", "identity", "fill")


def stored_tensors(
    prefix: str, values: dict[str, np.ndarray], storage: str
) -> tuple[list[TensorProto], list[onnx.NodeProto], list[str]]:
    """Initializers, nodes and BatchNorm input names storing `values` the `storage` way.

    `identity`: initializers read through an Identity node; `fill`: the weight is a
    ConstantOfShape of its first value (the others stay initializers).
    """
    initializers, nodes, names = [], [], []
    for leaf, array in values.items():
        name = f"{prefix}.{leaf}"
        array = array.astype(np.float32)
        if storage == "constant":
            nodes.append(
                helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array))
            )
        elif storage == "value_floats":
            nodes.append(helper.make_node("Constant", [], [name], value_floats=array.tolist()))
        elif storage == "identity":
            initializers.append(numpy_helper.from_array(array, f"{name}.stored"))
            nodes.append(helper.make_node("Identity", [f"{name}.stored"], [name]))
        elif storage == "fill" and leaf == "weight":
            shape = numpy_helper.from_array(np.array(array.shape, dtype=np.int64), f"{name}.shape")
            fill = numpy_helper.from_array(array[:1])
            initializers.append(shape)
            nodes.append(helper.make_node("ConstantOfShape", [shape.name], [name], value=fill))
        else:
            initializers.append(numpy_helper.from_array(array, name))
        names.append(name)
    return initializers, nodes, names


def layer_values(seed: int, mean: float = 0.0, var: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "weight": rng.uniform(0.5, 1.5, CHANNELS),
        "bias": rng.normal(0.0, 0.2, CHANNELS),
        "mean": np.full(CHANNELS, mean) + rng.normal(0, 0.1, CHANNELS),
        "var": np.full(CHANNELS, var) * rng.uniform(0.5, 2.0, CHANNELS),
    }


def two_layer_model(
    storage: str = "initializer",
    eps: Sequence[float | None] = (1e-5, 1e-5),
    bn_names: Sequence[str] = ("bn1", "bn2"),
    conv_names: Sequence[str] = ("conv1", "conv2"),
    values: Sequence[dict[str, np.ndarray]] | None = None,
) -> onnx.ModelProto:
    """image -> conv1 -> bn1 -> Relu -> conv2 -> bn2 -> output, batch axis dynamic."""
    values = values or [layer_values(1), layer_values(2)]
    rng = np.random.default_rng(0)
    initializers, nodes = [], []
    source = "image"
    for index in range(2):
        weight = numpy_helper.from_array(
            rng.normal(0, 0.5, (CHANNELS, CHANNELS if index else SHAPE[0], 3, 3)).astype(
                np.float32
            ),
            f"conv{index + 1}.weight",
        )
        stored, constants, names = stored_tensors(f"bn{index + 1}", values[index], storage)
        initializers += [weight, *stored]
        attributes = {} if eps[index] is None else {"epsilon": eps[index]}
        nodes += [
            *constants,
            helper.make_node(
                "Conv", [source, weight.name], [f"c{index}"], name=conv_names[index], pads=[1] * 4
            ),
            helper.make_node(
                "BatchNormalization",
                [f"c{index}", *names],
                [f"b{index}"],
                name=bn_names[index],
                **attributes,
            ),
        ]
        source = f"b{index}"
        if index == 0:
            nodes.append(helper.make_node("Relu", ["b0"], ["r0"]))
            source = "r0"
    return model_of(nodes, initializers, source)


def model_of(
    nodes: list[onnx.NodeProto], initializers: list[TensorProto], output: str
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "bnstat-test",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *SHAPE])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", "c", "h", "w"])],
        initializers,
    )
    model = helper.make_model(
        graph, producer_name="bnstat-tests", opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: Path, **options: object) -> Path:
    onnx.save(model, str(path), **options)  # type: ignore[arg-type]
    return path


def calibration_folder(folder: Path, samples: int = 64, seed: int = 3) -> tuple[Path, np.ndarray]:
    """A folder with one .npy file of samples for `--data`, and the samples."""
    values = np.random.default_rng(seed).normal(0.5, 1.0, (samples, *SHAPE)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "samples.npy", values)
    return folder, values


def probed_run(
    path: Path, data: np.ndarray, input_name: str = "image"
) -> list[dict[str, np.ndarray]]:
    """Per BatchNormalization node, in graph order: its input and its stored statistics,
    fetched by onnxruntime itself (each as an extra graph output)."""
    model = onnx.load(str(path))
    layers = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    wanted = [(n.input[0], n.input[3], n.input[4]) for n in layers]
    for names in wanted:
        model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    fetched = session.run([name for names in wanted for name in names], {input_name: data})
    return [
        {"input": fetched[3 * i], "mean": fetched[3 * i + 1], "var": fetched[3 * i + 2]}
        for i in range(len(wanted))
    ]


def consistency_errors(path: Path, data: np.ndarray, input_name: str = "image") -> list[float]:
    """Per layer: the largest relative difference between its stored mean and variance and
    the float64 mean and unbiased variance of its inference-mode input over `data`."""
    errors = []
    for layer in probed_run(path, data, input_name):
        values = layer["input"].astype(np.float64)
        flat = np.moveaxis(values, 1, 0).reshape(values.shape[1], -1)
        mean, var = flat.mean(axis=1), flat.var(axis=1, ddof=1)
        scale = np.sqrt(var)
        errors.append(
            max(
                float(np.max(np.abs(layer["mean"] - mean) / scale)),
                float(np.max(np.abs(layer["var"] - var) / var)),
            )
        )
    return errors


def digits_images() -> np.ndarray:
    """The 300 sample PNGs as the digits model sees them, decoded here without bnstat."""
    from PIL import Image

    paths = sorted((SAMPLES / "digits").rglob("*.png"))
    pixels = np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.float32) for p in paths])
    return (pixels / 255.0)[:, None]


def digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The 360 held-out test images and labels, split as make_samples.py splits them."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.round(digits.images * 255 / 16).astype(np.uint8)
    _, test = train_test_split(
        np.arange(len(pixels)), test_size=0.2, random_state=0, stratify=digits.target
    )
    return (pixels[test].astype(np.float32) / 255)[:, None], digits.target[test]


def accuracy(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": images})
    return float((logits.argmax(1) == labels).mean())
