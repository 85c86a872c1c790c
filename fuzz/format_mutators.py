"""Structure-aware mutations of the graph formats and of plain pickles, for the fuzzer.

Byte mutations rarely get past a protobuf's length prefixes, a JSON parser or Python's
own parser, so these change one field and keep the rest valid:

- ONNX (protobuf): the wire format is walked (no `onnx` needed) and one string field's
  bytes are replaced by random ones of the same length (a node name of random bytes,
  say), or one varint field (a data type, a dimension, an attribute type) by another
  of the same width, so no enclosing length changes.
- `.pt2` archives: one field of a JSON member (weights config, serialized program).
- TorchScript archives: one line of a code member (duplicated, deleted, an identifier
  or number replaced, parentheses unbalanced): the code is parsed to find what follows
  each layer and read for its constants.
- plain pickles: one of the legacy torch streams nested in the pickle, changed in place
  (same length), so the outer pickle stays valid and the nested reader sees the damage.

Each function takes the bytes of a member or file and a `random.Random`, and returns
new bytes (the input unchanged when the structure is not there).
"""

from __future__ import annotations

import json
import pickletools
import random
import re
from collections.abc import Callable

from bnstat.readers.sniff import varint

_WIRE_VARINT, _WIRE_64, _WIRE_BYTES, _WIRE_32 = 0, 1, 2, 5
MAX_FIELDS = 200_000


def _message(data: bytes, at: int, end: int) -> tuple[list[tuple[int, int]], ...] | None:
    """(text fields, varint fields, other length-delimited fields) of the bytes
    `data[at:end]` read as one protobuf message, or None when they are not one."""
    texts: list[tuple[int, int]] = []
    varints: list[tuple[int, int]] = []
    others: list[tuple[int, int]] = []
    while at < end:
        tag, at = varint(data, at)
        if tag is None or tag >> 3 == 0:
            return None
        wire = tag & 7
        if wire == _WIRE_VARINT:
            value, after = varint(data, at)
            if value is None:
                return None
            varints.append((at, after))
            at = after
        elif wire == _WIRE_BYTES:
            length, start = varint(data, at)
            if length is None or start + length > end:
                return None
            at = start + length
            field = data[start:at]
            text = bool(field) and field.isascii() and field.decode().isprintable()
            (texts if text else others).append((start, at))
        elif wire in (_WIRE_64, _WIRE_32):
            at += 8 if wire == _WIRE_64 else 4
        else:
            return None
    return (texts, varints, others) if at == end else None


def protobuf_fields(data: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(start, end) of the text fields and of the varint fields of a protobuf message,
    looking into every length-delimited field that parses as a message itself."""
    texts: list[tuple[int, int]] = []
    varints: list[tuple[int, int]] = []
    pending = [(0, len(data))]
    while pending and len(texts) + len(varints) < MAX_FIELDS:
        at, end = pending.pop()
        message = _message(data, at, end)
        if message is not None:
            texts += message[0]
            varints += message[1]
            pending += message[2]
    return texts, varints


def protobuf_field(data: bytes, rng: random.Random) -> bytes:
    """One string field overwritten with random bytes, or one varint with another of the
    same width, so every length prefix around it stays right."""
    texts, varints = protobuf_fields(data)
    if texts and (not varints or rng.random() < 0.6):
        start, end = rng.choice(texts)
        return data[:start] + rng.randbytes(end - start) + data[end:]
    if not varints:
        return data
    start, end = rng.choice(varints)
    width = end - start
    value = rng.choice((0, 1, 2, 7, 11, 16, 127, 2**31, 2**63 - 1)) % (1 << (7 * width))
    encoded = bytearray()
    for index in range(width):  # little-endian groups of 7 bits, continuation bit set
        encoded.append((value >> (7 * index)) & 0x7F | (0x80 if index < width - 1 else 0))
    return data[:start] + bytes(encoded) + data[end:]


def mutate_json(value: object, rng: random.Random, leaves: Callable[..., object]) -> object:
    """One path of a JSON value changed: a key dropped, a list item or a leaf replaced."""
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        if rng.random() < 0.15:
            return {k: v for k, v in value.items() if k != key}
        return {**value, key: mutate_json(value[key], rng, leaves)}
    if isinstance(value, list) and value and rng.random() < 0.8:
        at = rng.randrange(len(value))
        return [*value[:at], mutate_json(value[at], rng, leaves), *value[at + 1 :]]
    return leaves(value, rng)


def json_text(data: bytes, rng: random.Random, leaves: Callable[..., object]) -> bytes:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return data
    return json.dumps(mutate_json(value, rng, leaves)).encode()


_WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?(?:e-?\d+)?")
_REPLACEMENTS = (b"forward", b"self", b"torch.add", b"relu", b"None", b"0", b"-1", b"1e309",
                 b"getattr", b"__torch__", b"x" * 300, b"(" * 50, b"")  # fmt: skip


def code_line(data: bytes, rng: random.Random) -> bytes:
    """One line of TorchScript code duplicated, deleted, or with a word replaced."""
    lines = data.split(b"\n")
    at = rng.randrange(len(lines))
    choice = rng.randrange(4)
    if choice == 0:
        return b"\n".join([*lines[: at + 1], lines[at], *lines[at + 1 :]])
    if choice == 1:
        return b"\n".join([*lines[:at], *lines[at + 1 :]])
    words = list(_WORD.finditer(lines[at]))
    if not words:
        return data
    word = rng.choice(words)
    line = lines[at]
    lines[at] = line[: word.start()] + rng.choice(_REPLACEMENTS) + line[word.end() :]
    return b"\n".join(lines)


_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
_BYTES_OPS = ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8")


def nested_stream(data: bytes, rng: random.Random, change: Callable[..., bytes]) -> bytes:
    """A plain pickle with one nested torch stream (a bytes argument) changed in place."""
    spans = []
    try:
        for opcode, argument, position in pickletools.genops(data):
            stream = isinstance(argument, bytes) and argument.startswith(_LEGACY_MAGIC)
            if opcode.name in _BYTES_OPS and stream:
                start = data.index(argument, position)
                spans.append((start, start + len(argument)))
    except Exception:  # a mutated or foreign pickle: leave it to the byte mutations
        pass
    if not spans:
        return data
    start, end = rng.choice(spans)
    stream = change(data[start:end], rng)
    stream = (stream + bytes(end - start))[: end - start]  # same length: the outer stays valid
    return data[:start] + stream + data[end:]
