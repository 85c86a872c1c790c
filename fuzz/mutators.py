"""Mutations of checkpoint files for fuzzing bnstat's readers, and the fuzzing oracle.

Byte-level mutations (truncate, flip, overwrite with interesting values, insert, delete,
duplicate, splice from another file) reach the container parsers; structure-aware ones
rewrite a pickle inside its zip archive (fixing the CRC, so zipfile accepts it), mutate
zip directory fields, the fields of a safetensors header or the opcodes of a pickle, so
that the deeper code (the pickle scanner, the unpickler, tensor layout) sees mutated
input too. Every mutation takes the bytes and a `random.Random` and returns new bytes,
so a run is reproducible from its seed.

`run_one` is the oracle shared by the hypothesis test and the long fuzz run: bnstat's
library path behind `bnstat check` on one file must end in a report or a clean error,
never an unexpected exception.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import format_mutators

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, ord("("), ord("q"), ord("r"), ord("."))
INTERESTING_INTS = (
    0, 1, 2, 3, 7, 8, 255, 256, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**32, 2**40, 2**62,
    2**63 - 1, 2**64 - 1, -1, -(2**31),
)  # fmt: skip
PICKLE_OPCODES = b"()]}.0NRbcehjqrstuK\x85\x86\x87\x88\x89\x8a\x8c\x8f\x90\x93\x94\x95Q"

Mutation = Callable[[bytes, random.Random], bytes]


def _position(data: bytes, rng: random.Random) -> int:
    return rng.randrange(len(data) + 1)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: _position(data, rng)]


def flip_bit(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]


def set_byte(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + bytes([rng.choice(INTERESTING_BYTES)]) + data[at + 1 :]


def set_int(data: bytes, rng: random.Random) -> bytes:
    width = rng.choice((2, 4, 8))
    if len(data) < width:
        return data
    value = rng.choice(INTERESTING_INTS) % (1 << (8 * width))
    at = rng.randrange(len(data) - width + 1)
    return data[:at] + value.to_bytes(width, "little") + data[at + width :]


def insert(data: bytes, rng: random.Random) -> bytes:
    at = _position(data, rng)
    return data[:at] + rng.randbytes(rng.choice((1, 2, 4, 8, 64))) + data[at:]


def delete(data: bytes, rng: random.Random) -> bytes:
    at = _position(data, rng)
    return data[:at] + data[at + rng.choice((1, 2, 4, 8, 64, 4096)) :]


def duplicate(data: bytes, rng: random.Random) -> bytes:
    start = _position(data, rng)
    chunk = data[start : start + rng.choice((1, 8, 64, 512, 4096))]
    at = _position(data, rng)
    return data[:at] + chunk * rng.choice((1, 2, 16)) + data[at:]


def zip_member(
    data: bytes,
    rng: random.Random,
    change: Callable[[bytes, random.Random], bytes],
    suffix: str = ".pkl",
) -> bytes:
    """Rewrite one member of a zip archive (one named `*suffix`, preferably) with a valid
    CRC."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            contents = [archive.read(info) for info in infos]
    except Exception:
        return data
    if not infos:
        return data
    preferred = [i for i, info in enumerate(infos) if info.filename.endswith(suffix)]
    chosen = (
        rng.choice(preferred) if preferred and rng.random() < 0.8 else rng.randrange(len(infos))
    )
    contents[chosen] = change(contents[chosen], rng)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for info, content in zip(infos, contents, strict=True):
            archive.writestr(zipfile.ZipInfo(info.filename, date_time=info.date_time), content)
    return buffer.getvalue()


def pickle_opcode(data: bytes, rng: random.Random) -> bytes:
    """Replace, insert or remove a byte with a pickle opcode, or copy a run of the pickle."""
    if not data:
        return data
    at = rng.randrange(len(data))
    choice = rng.randrange(4)
    if choice == 0:
        return data[:at] + bytes([rng.choice(PICKLE_OPCODES)]) + data[at + 1 :]
    if choice == 1:
        return data[:at] + bytes([rng.choice(PICKLE_OPCODES)]) + data[at:]
    if choice == 2:
        return data[:at] + data[at + 1 :]
    end = min(len(data), at + rng.choice((2, 5, 16, 64)))
    target = rng.randrange(len(data))
    return data[:target] + data[at:end] * rng.choice((1, 2, 50)) + data[target:]


def mutate_pickle_member(data: bytes, rng: random.Random) -> bytes:
    def change(member: bytes, rng: random.Random) -> bytes:
        for _ in range(rng.randint(1, 3)):
            member = rng.choice((pickle_opcode, flip_bit, set_byte, set_int, truncate))(member, rng)
        return member

    return zip_member(data, rng, change)


def zip_directory_field(data: bytes, rng: random.Random) -> bytes:
    """Overwrite a size, offset or count field of a central directory or end record."""
    spots = [m.start() for m in re.finditer(rb"PK\x01\x02|PK\x05\x06|PK\x06\x06", data)]
    if not spots:
        return data
    at = rng.choice(spots)
    if data[at + 2 : at + 4] == b"\x01\x02":
        offset, width = rng.choice(((20, 4), (24, 4), (28, 2), (30, 2), (42, 4), (10, 2)))
    elif data[at + 2 : at + 4] == b"\x05\x06":
        offset, width = rng.choice(((8, 2), (10, 2), (12, 4), (16, 4), (20, 2)))
    else:
        offset, width = rng.choice(((24, 8), (32, 8), (40, 8), (48, 8)))
    if at + offset + width > len(data):
        return data
    value = rng.choice(INTERESTING_INTS) % (1 << (8 * width))
    return data[: at + offset] + value.to_bytes(width, "little") + data[at + offset + width :]


def _json_leaf(value: object, rng: random.Random) -> object:
    """A JSON leaf (or an empty container) replaced by a value of another kind or size."""
    if isinstance(value, list):
        return [*value, rng.choice(INTERESTING_INTS)]
    if isinstance(value, bool) or value is None:
        return rng.choice((0, "x", [], {}, None))
    if isinstance(value, int):
        return rng.choice((*INTERESTING_INTS, value + 1, value - 1, -value, str(value), 1.5))
    if isinstance(value, str):
        return rng.choice(("", "F32", "F16", "BF16", "I64", "BOOL", "F8_E4M3", "?", value * 2, 0))
    return rng.choice((0, "x"))


def safetensors_header(data: bytes, rng: random.Random) -> bytes:
    """Mutate one field of a safetensors header; sometimes leave the length prefix stale."""
    if len(data) < 8:
        return data
    length = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + length])
    except (ValueError, RecursionError):
        return data
    text = json.dumps(format_mutators.mutate_json(header, rng, _json_leaf)).encode()
    prefix = len(text) if rng.random() < 0.9 else rng.choice(INTERESTING_INTS) % 2**64
    return struct.pack("<Q", prefix) + text + data[8 + length :]


def splice(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    other = rng.choice(others)
    start = rng.randrange(len(other) + 1)
    chunk = other[start : start + rng.choice((8, 64, 512, 8192))]
    at = _position(data, rng)
    return data[:at] + chunk + data[at + len(chunk) if rng.random() < 0.5 else at :]


def json_member(data: bytes, rng: random.Random) -> bytes:
    """One field of a JSON member of a zip archive (a `.pt2` config or program)."""
    return zip_member(
        data, rng, lambda text, r: format_mutators.json_text(text, r, _json_leaf), ".json"
    )


def code_member(data: bytes, rng: random.Random) -> bytes:
    """One line of a TorchScript archive's code."""
    return zip_member(data, rng, format_mutators.code_line, ".py")


def plain_pickle(data: bytes, rng: random.Random) -> bytes:
    """A whole-file pickle (`pickle.dump`) changed opcode-wise, or one of its nested torch
    streams changed in place."""
    if rng.random() < 0.5:
        return format_mutators.nested_stream(data, rng, lambda stream, r: pickle_opcode(stream, r))
    return pickle_opcode(data, rng) if data[:1] == b"\x80" else data


BYTE_MUTATIONS: dict[str, Mutation] = {
    "truncate": truncate,
    "flip_bit": flip_bit,
    "set_byte": set_byte,
    "set_int": set_int,
    "insert": insert,
    "delete": delete,
    "duplicate": duplicate,
}
STRUCTURE_MUTATIONS: dict[str, Mutation] = {
    "pickle_member": mutate_pickle_member,
    "zip_directory": zip_directory_field,
    "safetensors_header": safetensors_header,
    "protobuf_field": format_mutators.protobuf_field,
    "json_member": json_member,
    "code_member": code_member,
    "plain_pickle": plain_pickle,
}
MUTATIONS = {**BYTE_MUTATIONS, **STRUCTURE_MUTATIONS}


def mutate(data: bytes, rng: random.Random, names: list[str], others: list[bytes]) -> bytes:
    """Apply the named mutations in order (`splice` takes bytes from `others`)."""
    for name in names:
        data = splice(data, rng, others) if name == "splice" else MUTATIONS[name](data, rng)
    return data


# ---------------------------------------------------------------- seeds and the oracle

REPO = Path(__file__).resolve().parents[1]
SEED_NAMES = (
    "healthy.pt", "legacy.pt", "healthy.safetensors", "healthy_fp16.safetensors",
    "healthy_bf16.safetensors", "lightning.ckpt", "full_module.pt", "scripted.pt", "ddp.pt",
    "ema_stale.pt", "pickle_payload.pt", "bn009_folding_scale_outlier.pt", "traced.pt",
    "digits.pt2", "digits.onnx", "digits_folded_stats.onnx", "pickled_model.pkl",
    "pickled_state_dict.pkl",
)  # fmt: skip
HOSTILE_SEEDS = (
    "zip_setstate-gadget_beside_tensors.pt",
    "legacy_os_system_beside_tensors.pt",
    "zip_appended_pickle.pt",
    "zip_getattr-handed-on_beside_tensors.pt",
    "zip_getattr_method_reference.pt",
)


def seeds() -> dict[str, bytes]:
    """Sample checkpoints of every format, a few hostile ones, and the text files of a
    model repository: a Git LFS pointer, a shard index (whose shard is missing)."""
    found = {name: (REPO / "sample_checkpoints" / name).read_bytes() for name in SEED_NAMES}
    hostile = REPO / "tests" / "data" / "hostile"
    found |= {name: (hostile / name).read_bytes() for name in HOSTILE_SEEDS}
    weights = found["healthy.safetensors"]
    found["lfs_pointer.safetensors"] = (
        "version https://git-lfs.github.com/spec/v1\n"
        f"oid sha256:{hashlib.sha256(weights).hexdigest()}\nsize {len(weights)}\n"
    ).encode()
    shard = "pytorch_model-00001-of-00001.bin"
    index = {"metadata": {"total_size": 1}, "weight_map": {"bn.running_mean": shard}}
    found["pytorch_model.bin.index.json"] = json.dumps(index, indent=2).encode()
    return found


@dataclass(frozen=True)
class Outcome:
    """What bnstat made of one input: exit code and its message with numbers masked."""

    exit_code: int
    message: str
    bug: bool  # an internal error: an exception that is no bnstat error, i.e. a bug

    @property
    def key(self) -> str:
        return f"{self.exit_code}: {self.message}"


_NUMBERS = re.compile(r"\d+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def normalized(message: str) -> str:
    """An error message as a class of outcomes: numbers and quoted names masked."""
    return _NUMBERS.sub("N", _QUOTED.sub("'S'", message))[:160]


def run_one(path: Path) -> Outcome:
    """Analyse and render one file the way `bnstat check` does; classify the result."""
    from bnstat.analysis import analyze
    from bnstat.cli.app import exit_code
    from bnstat.formats import InspectFormat, inspect_emitter
    from bnstat.formats.display import Display
    from bnstat.report.inspection import ErrorKind
    from bnstat.settings import Settings

    try:
        report = analyze([path], Settings())
        code = exit_code(report)
        for fmt in (InspectFormat.JSON, InspectFormat.TABLE):
            inspect_emitter(fmt)(report, Display(exit_code=code))
    except Exception as err:  # analyze reports every error itself: anything here is a bug
        return Outcome(2, f"escaped {type(err).__name__}: {normalized(str(err))}", True)
    (entry,) = report.checkpoints[:1] or [None]
    error = entry.error if entry is not None else None
    if error is None:
        rules = sorted({f.rule for c in report.checkpoints for f in c.findings})
        return Outcome(code, "report " + ",".join(rules), False)
    return Outcome(code, normalized(error.message), error.kind is ErrorKind.INTERNAL)
