"""torch.export archives (`.pt2`), read without torch and without running anything.

An archive whose `archive_format` member says `pt2` keeps every parameter and buffer as
a raw file under `data/weights/`, described by `data/weights/<model>_weights_config.json`
(fully qualified name, file, dtype code, sizes, strides, storage offset); constants sit
under `data/constants/` the same way. `models/<model>.json` is the serialized program:
its batch_norm calls carry each layer's real eps, its signature maps graph inputs to the
buffers they read, and node metadata names the module class (BatchNorm2d, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from bnstat.dtypes import DTYPES, DType
from bnstat.errors import CheckpointError, UnsupportedCheckpointError
from bnstat.readers.base import ModuleConstants, parse_json
from bnstat.readers.followers import Use, Uses, follower_of
from bnstat.tensor_ref import ByteSource, TensorRef

MAX_JSON_BYTES = 256 * 2**20
# torch._export.serde.schema.ScalarType codes -> canonical dtype names
SCALAR_TYPES = {
    1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32",
    8: "float64", 12: "bool", 13: "bfloat16", 28: "uint16", 34: "uint32", 35: "uint64",
}  # fmt: skip

Sources = Callable[[str, int | None], ByteSource]


def is_pt2(names: set[str], root: str, read_text: Callable[[str], str]) -> bool:
    marker = f"{root}/archive_format"
    return marker in names and read_text(marker).strip() == "pt2"


def _json(source: ByteSource, name: str) -> Any:
    return parse_json(source.read(0, source.size), name)


def _ints(values: Any, what: str, name: str) -> tuple[int, ...]:
    if not isinstance(values, list):
        raise CheckpointError(f"{name}: {what} is not a list")
    out = []
    for value in values:
        number = value.get("as_int") if isinstance(value, dict) else None
        if type(number) is not int or number < 0:
            raise CheckpointError(f"{name}: {what} is symbolic or invalid ({str(value)[:40]})")
        out.append(number)
    return tuple(out)


def _tensor(name: str, entry: Any, folder: str, sources: Sources) -> TensorRef:
    if not isinstance(entry, dict) or not isinstance(entry.get("path_name"), str):
        raise CheckpointError(f"pt2 weights config: malformed entry for {name}")
    if entry.get("use_pickle"):
        raise UnsupportedCheckpointError(
            f"{name} is stored pickled in the pt2 archive: not supported"
        )
    meta = entry.get("tensor_meta", {})
    code = meta.get("dtype") if isinstance(meta, dict) else None
    if code not in SCALAR_TYPES:
        raise CheckpointError(f"{name}: unsupported dtype code {code!r} in the pt2 archive")
    dtype: DType = DTYPES[SCALAR_TYPES[code]]
    shape = _ints(meta.get("sizes"), "sizes", name)
    strides = _ints(meta.get("strides"), "strides", name)
    (offset,) = _ints([meta.get("storage_offset", {"as_int": 0})], "storage_offset", name)
    if len(shape) != len(strides):
        raise CheckpointError(f"{name}: sizes and strides differ in length")
    if "/" in entry["path_name"] or entry["path_name"] in ("", ".", ".."):
        raise CheckpointError(f"{name}: weight file {entry['path_name']!r} is not a plain name")
    source = sources(f"{folder}/{entry['path_name']}", None)
    return TensorRef(dtype, shape, source, offset, strides)


def read_tensors(root: str, names: set[str], sources: Sources) -> dict[str, dict[str, TensorRef]]:
    """Per model in the archive, its tensors by fully qualified name."""
    models: dict[str, dict[str, TensorRef]] = {}
    for kind in ("weights", "constants"):
        suffix = f"_{kind}_config.json"
        for config in sorted(
            n for n in names if n.startswith(f"{root}/data/{kind}/") and n.endswith(suffix)
        ):
            model = config.rsplit("/", 1)[1].removesuffix(suffix)
            body = _json(sources(config, MAX_JSON_BYTES), config)
            entries = body.get("config", {}) if isinstance(body, dict) else {}
            if not isinstance(entries, dict):
                raise CheckpointError(f"{config}: config is not an object")
            folder = f"{root}/data/{kind}"
            tensors = models.setdefault(model, {})
            tensors.update(
                (fqn, _tensor(fqn, entry, folder, sources)) for fqn, entry in entries.items()
            )
    return models


def layer_constants(root: str, names: set[str], sources: Sources) -> dict[str, ModuleConstants]:
    """eps, momentum, class and follower of every batch_norm call, by module prefix."""
    found: dict[str, ModuleConstants] = {}
    for program in sorted(
        n for n in names if n.startswith(f"{root}/models/") and n.endswith(".json")
    ):
        graph_module = _json(sources(program, MAX_JSON_BYTES), program).get("graph_module", {})
        buffers = _buffer_names(graph_module.get("signature", {}))
        graph = graph_module.get("graph", {})
        nodes = [node for node in graph.get("nodes", []) if isinstance(node, dict)]
        uses = _uses(nodes, graph.get("outputs", []))
        for node in nodes:
            if "batch_norm" in str(node.get("target", "")):
                constants = _batchnorm_constants(node, buffers)
                if constants is not None:
                    follower = follower_of(_tensor_names(node.get("outputs"))[:1], uses)
                    found[constants[0]] = replace(constants[1], follower=follower)
    return found


def _tensor_names(argument: Any) -> list[str]:
    """The tensor names in a serialized argument or output list, in order."""
    names, pending = [], [argument]
    while pending:  # not recursive: the JSON nests as deep as the file likes
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, dict):
            tensor = item.get("as_tensor")
            if isinstance(tensor, dict) and isinstance(tensor.get("name"), str):
                names.append(tensor["name"])
            else:
                pending.append(item.get("as_tensors") or item.get("arg") or [])
    return names


def _uses(nodes: list[dict[str, Any]], outputs: Any) -> Uses:
    """Who reads each tensor of the program: (op, its first output) per reading node."""
    readers: dict[Hashable, list[Use]] = {
        name: [("output", None)] for name in _tensor_names(outputs)
    }
    for node in nodes:
        target = str(node.get("target", ""))
        parts = target.split(".")
        op = parts[3] if target.startswith("torch.ops.") and len(parts) > 3 else parts[-1]
        produced = _tensor_names(node.get("outputs"))
        for name in _tensor_names(node.get("inputs")):
            readers.setdefault(name, []).append((op, produced[0] if produced else None))
    return lambda value: readers.get(value, [])


def _buffer_names(signature: Mapping[str, Any]) -> dict[str, str]:
    """Graph input name -> the parameter or buffer it reads."""
    names = {}
    for spec in signature.get("input_specs", []):
        for kind, key in (("buffer", "buffer_name"), ("parameter", "parameter_name")):
            body = spec.get(kind) if isinstance(spec, dict) else None
            if isinstance(body, dict):
                graph_name, target = body.get("arg", {}).get("name"), body.get(key)
                if isinstance(graph_name, str) and isinstance(target, str):
                    names[graph_name] = target
    return names


def _arguments(node: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for argument in node.get("inputs", []):
        if isinstance(argument, dict) and isinstance(argument.get("name"), str):
            yield argument["name"], argument.get("arg", {})


def _batchnorm_constants(
    node: Mapping[str, Any], buffers: Mapping[str, str]
) -> tuple[str, ModuleConstants] | None:
    arguments = dict(_arguments(node))
    buffer = buffers.get(arguments.get("running_mean", {}).get("as_tensor", {}).get("name"))
    if not isinstance(buffer, str) or not buffer.endswith("running_mean"):
        return None
    prefix = buffer.removesuffix("running_mean").removesuffix(".")
    stack = str(node.get("metadata", {}).get("nn_module_stack", ""))
    kind = stack.rsplit(";", 1)[-1].rsplit(",", 1)[-1].rsplit(".", 1)[-1] or "BatchNorm"
    eps = arguments.get("eps", {}).get("as_float")
    momentum = arguments.get("momentum", {}).get("as_float")
    return prefix, ModuleConstants(
        kind=kind,
        eps=float(eps) if isinstance(eps, int | float) else None,
        momentum=float(momentum) if isinstance(momentum, int | float) else None,
    )
