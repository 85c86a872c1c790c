"""Tell a file's format from its first bytes, never from its name.

Extensions lie (`.bin`, `.ckpt`, `.pth` and `.pt` are all used for every torch format), so
the reader is chosen by magic bytes, told apart here without loading any reader. Files
bnstat cannot read get an error that says what they appear to be, which is more use than
"unsupported format".
"""

from __future__ import annotations

import enum

from bnstat.errors import CheckpointError, UnsupportedCheckpointError
from bnstat.location import Location, first_bytes

HEAD_BYTES = 64
JSON_HEAD_BYTES = 64 * 2**10  # where a shard index's weight_map must start (after metadata)
LFS_POINTER_BYTES = 1024  # Git LFS pointer files are smaller than this, by its spec
LFS_VERSIONS = (
    b"version https://git-lfs.github.com/spec/",
    b"version https://hawser.github.com/spec/",
)
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # what a legacy torch file pickles first
PROTOCOLS = range(2, 6)  # what starts with b"\x80" and a protocol byte; 0 and 1 have no header


class Container(enum.Enum):
    """The outer container of a file; the torch zip reader tells its kinds apart."""

    ZIP = "zip"
    SAFETENSORS = "safetensors"
    SHARD_INDEX = "shard-index"
    TORCH_LEGACY = "torch-legacy"
    ONNX = "onnx"
    PLAIN_PICKLE = "plain-pickle"


_NOT_SUPPORTED = (
    (b"\x1f\x8b", "a gzip-compressed file: decompress it first"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5): not a PyTorch checkpoint"),
    (b"\x93NUMPY", "a numpy .npy array, not a checkpoint"),
    (b"\x80", "a pickle of an unknown protocol: not a checkpoint"),
)


def looks_like_safetensors(head: bytes) -> bool:
    """An 8-byte header length followed by a JSON object (the reader checks the length)."""
    return len(head) >= 9 and int.from_bytes(head[:8], "little") >= 2 and head[8:9] == b"{"


def is_shard_index(head: bytes) -> bool:
    """A JSON object with a `weight_map` (the head of a JSON file is read further)."""
    return head.lstrip()[:1] == b"{" and b'"weight_map"' in head


def lfs_pointer(head: bytes) -> str | None:
    """What a Git LFS pointer file stands for, and what to do; None for any other file.

    A repository whose checkpoints are in Git LFS, checked out without fetching the LFS
    objects, holds these small text files in their place (`version`, `oid`, `size` lines).
    """
    if not head.startswith(LFS_VERSIONS):
        return None
    lines = head.decode("ascii", "replace").splitlines()
    size = next((line[5:] for line in lines if line.startswith("size ")), "")
    content = f"its {int(size):,} bytes were" if size.isdigit() else "its content was"
    return (
        f"a Git LFS pointer, not the file: {content} never fetched; run "
        "`git lfs pull` (in GitHub Actions, check out with `lfs: true`)"
    )


def is_legacy_header(head: bytes) -> bool:
    """Whether the file starts with the pickled legacy magic number (protocol 2 LONG1)."""
    return (
        head[:1] == b"\x80"
        and head[2:4] == b"\x8a\x0a"
        and (head[4:14] == MAGIC_NUMBER.to_bytes(10, "little"))
    )


def is_plain_pickle(head: bytes) -> bool:
    """Whether the file starts like a pickle of protocol 2 or later."""
    return len(head) >= 2 and head[0] == 0x80 and head[1] in PROTOCOLS


# ModelProto fields after ir_version, by number: their protobuf wire type (0 varint, 2 bytes)
_MODEL_FIELDS = {2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_NAME_FIELDS = {2, 3, 4}  # producer_name, producer_version, domain: one line of text
_GRAPH_TAGS = {0x0A, 0x12, 0x2A, 0x52, 0x5A, 0x62, 0x6A, 0x72, 0x7A, 0x82}  # GraphProto fields
_OPSET_TAGS = {0x0A, 0x10}  # OperatorSetIdProto: domain, version


def looks_like_onnx(head: bytes, size: int) -> bool:
    """A serialized ModelProto: `ir_version` first, then known fields of the right kinds.

    Every field that starts in `head` must be one ModelProto has, with its wire type, a
    length that fits in the file, and plausible content (names are text, a graph starts
    with a GraphProto field), so that a raw weight file or another protobuf (a TensorFlow
    SavedModel also starts with field 1 = 1) is not taken for a model.
    """
    if len(head) < 4 or head[0] != 0x08 or not 1 <= head[1] < 0x80:
        return False
    position, fields = 2, 0
    while position < len(head):
        tag, position = varint(head, position)
        value, position = varint(head, position)
        if tag is None or value is None:
            break  # the field runs past the head: what was seen so far decides
        number, wire = tag >> 3, tag & 7
        if _MODEL_FIELDS.get(number) != wire:
            return False
        if wire == 2:
            if position + value > size or not _plausible(number, head[position : position + value]):
                return False
            position += value
        fields += 1
    return fields > 0


def varint(data: bytes, position: int) -> tuple[int | None, int]:
    """The protobuf varint at `position` and where it ends; None when `data` ends first."""
    value = shift = 0
    while position < len(data) and shift < 64:
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if byte < 0x80:
            return value, position
    return None, position


def _plausible(number: int, content: bytes) -> bool:
    if number in _NAME_FIELDS:
        return all(b >= 0x20 and b != 0x7F for b in content)
    if number == 7:
        return not content or content[0] in _GRAPH_TAGS
    if number == 8:
        return not content or content[0] in _OPSET_TAGS
    return True


def sniff(path: Location) -> Container:
    """The container format of `path` (a file or a URL), or a `CheckpointError` saying
    what the file is."""
    head, tar_magic, size = first_bytes(path, HEAD_BYTES)
    more = _more_to_read(head) if len(head) == HEAD_BYTES else 0
    if more > 0:
        head, tar_magic, size = first_bytes(path, HEAD_BYTES + more)
    if size == 0:
        raise CheckpointError("empty file (0 bytes)")
    return _container(head, tar_magic, size)


def _more_to_read(head: bytes) -> int:
    """Bytes past the first HEAD_BYTES that tell a text file apart: a JSON object's keys
    (a shard index), a Git LFS pointer's lines."""
    if head.lstrip()[:1] == b"{":
        return JSON_HEAD_BYTES - len(head)
    return LFS_POINTER_BYTES - len(head) if head.startswith(LFS_VERSIONS) else 0


def _container(head: bytes, tar_magic: bytes, size: int) -> Container:
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return Container.ZIP
    if looks_like_safetensors(head):
        return Container.SAFETENSORS
    if is_legacy_header(head):
        return Container.TORCH_LEGACY
    if is_shard_index(head):
        return Container.SHARD_INDEX
    if looks_like_onnx(head, size):
        return Container.ONNX
    if is_plain_pickle(head):
        return Container.PLAIN_PICKLE
    if tar_magic == b"ustar":
        raise UnsupportedCheckpointError("a tar archive (torch < 0.4 format?): not supported")
    for magic, what in _NOT_SUPPORTED:
        if head.startswith(magic):
            raise UnsupportedCheckpointError(what)
    if head.startswith(b"PK"):
        raise CheckpointError("a truncated or corrupt zip archive")
    pointer = lfs_pointer(head)
    if pointer is not None:
        raise CheckpointError(pointer)
    preview = head[:8].hex(" ")
    raise UnsupportedCheckpointError(
        f"not a checkpoint format bnstat reads (first bytes: {preview})"
    )
