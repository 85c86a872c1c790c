"""Resource bombs: small files that ask for huge memory, time or reads.

Each file is built in a temporary folder and given to `bnstat inspect` in a child process
whose peak RSS (`os.wait4`) and wall time are measured. Every bomb must end in a clean
error (exit 2, one `bnstat: error:` line saying what was refused) well under 1 GiB and
within seconds; the few inputs that are merely large but legitimate must be reported.
Set BNSTAT_HARDENING_TABLE=1 to print the measurements at the end of the run.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hardening_helpers import Measured, load_make_hostile, measure, snapshot

MEMORY_LIMIT_MIB = 700  # "well under 1 GiB"
SECONDS_LIMIT = 30  # generous for a loaded 2-core CI machine; most take well under 1 s
MEASURED: list[tuple[str, Measured]] = []

mh = load_make_hostile()


# ------------------------------------------------------------------ builders


def _safetensors(
    header: dict[str, Any] | bytes, data: bytes = b"", claimed: int | None = None
) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if claimed is None else claimed) + raw + data


def _st_entry(begin: int, end: int, shape: list[int], dtype: str = "F32") -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def _zip_with_pickle(
    body: bytes, extra: dict[str, bytes] | None = None, protocol: int = 2
) -> bytes:
    base = mh.tiny_base()
    return mh.torch_zip(base, mh.pickle_of(body, protocol), extra)


def _state_dict_plus(junk: bytes) -> bytes:
    """`{"state_dict": <tiny state dict>, "junk": <junk>}`: tensors fine, junk hostile."""
    return mh.dct((mh.text("state_dict"), mh.tiny_base().body), (mh.text("junk"), junk))


def _tensor(key: str, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    return mh.tensor(key, "FloatStorage", 4, shape, offset=offset, stride=stride)


def _bn_layer(prefix: str, mean: bytes, var: bytes) -> list[tuple[bytes, bytes]]:
    return [(mh.text(f"{prefix}.running_mean"), mean), (mh.text(f"{prefix}.running_var"), var)]


def _patch_central_size(archive: bytes, member: str, size: int) -> bytes:
    """Make the central directory declare `size` uncompressed bytes for `member`."""
    data = bytearray(archive)
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_length] == member.encode():
            struct.pack_into("<I", data, at + 24, size)
            return bytes(data)
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(member)


def _deflated_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in members.items():
            archive.writestr(
                zipfile.ZipInfo(name, date_time=mh.ZIP_TIME), data, zipfile.ZIP_DEFLATED
            )
    return buffer.getvalue()


def _zip64_member_count(archive: bytes, count: int) -> bytes:
    """An archive whose (zip64) end-of-central-directory record declares `count` members."""
    end = archive.rfind(b"PK\x05\x06")
    directory_size, directory_offset = struct.unpack_from("<II", archive, end + 12)
    record = struct.pack(
        "<4sQHHIIQQQQ",
        b"PK\x06\x06",
        44,
        45,
        45,
        0,
        0,
        count,
        count,
        directory_size,
        directory_offset,
    )
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, end, 1)
    eocd = bytearray(archive[end:])
    struct.pack_into("<HH", eocd, 8, 0xFFFF, 0xFFFF)
    return archive[:end] + record + locator + bytes(eocd)


def _module_dag(levels: int) -> bytes:
    """A pickled nn.Module whose two children are the same module, `levels` times over."""
    leaf = mh.call(mh.glob("torch.nn.modules.batchnorm", "BatchNorm2d"))
    buffers = mh.dct(*_bn_layer_pairs())
    leaf += (
        mh.dct(
            (mh.text("_parameters"), mh.dct()),
            (mh.text("_buffers"), buffers),
            (mh.text("_modules"), mh.dct()),
        )
        + b"b"
    )
    body = leaf + b"r" + struct.pack("<I", 0)
    for level in range(1, levels):
        children = mh.dct(
            (mh.text("a"), b"j" + struct.pack("<I", level - 1)),
            (mh.text("b"), b"j" + struct.pack("<I", level - 1)),
        )
        node = mh.call(mh.glob("torch.nn.modules.container", "Sequential"))
        node += (
            mh.dct(
                (mh.text("_parameters"), mh.dct()),
                (mh.text("_buffers"), mh.dct()),
                (mh.text("_modules"), children),
            )
            + b"b"
        )
        body += b"0" + node + b"r" + struct.pack("<I", level)
    return body


def _bn_layer_pairs() -> list[tuple[bytes, bytes]]:
    return [
        (mh.text("running_mean"), _tensor("0", 0, (4,), (1,))),
        (mh.text("running_var"), _tensor("1", 0, (4,), (1,))),
    ]


def _many_state_dicts(count: int) -> bytes:
    """A list of `count` distinct state dicts sharing their keys and tensors (memo)."""
    parts = [mh.text("bn.running_mean"), _tensor("0", 0, (4,), (1,))]
    parts += [mh.text("bn.running_var"), _tensor("1", 0, (4,), (1,))]
    first = b"}(" + b"".join(p + b"r" + struct.pack("<I", i) for i, p in enumerate(parts)) + b"u"
    again = b"}(" + b"".join(b"j" + struct.pack("<I", i) for i in range(4)) + b"u"
    return b"(" + first + again * (count - 1) + b"l"


def _shared_storage_layers(layers: int, channels: int) -> bytes:
    """`layers` BatchNorm layers whose statistics all view the same storage."""
    tensor = mh.tensor("big", "FloatStorage", channels, (channels,))
    memo, again = b"r\x00\x00\x00\x00", b"j\x00\x00\x00\x00"
    pairs = [
        mh.text(f"l{i}.{leaf}") + (tensor + memo if i == 0 and leaf == "running_mean" else again)
        for i in range(layers)
        for leaf in ("running_mean", "running_var")
    ]
    return mh.call(mh.glob("collections", "OrderedDict")) + b"(" + b"".join(pairs) + b"u"


# name -> (the file's bytes, its suffix, text its one error line must contain)
BOMBS: dict[str, tuple[Callable[[], bytes], str, str]] = {}


def bomb(needle: str, suffix: str = ".pt") -> Callable[[Callable[[], bytes]], Callable[[], bytes]]:
    def register(build: Callable[[], bytes]) -> Callable[[], bytes]:
        BOMBS[build.__name__] = (build, suffix, needle)
        return build

    return register


# -- safetensors


@bomb("header claims", ".safetensors")
def st_header_claims_1tib() -> bytes:
    return _safetensors(b"{}", claimed=2**40)


@bomb("100 MB limit", ".safetensors")
def st_header_claims_just_over_the_limit() -> bytes:
    return _safetensors(b"{}", claimed=100 * 2**20 + 1)


@bomb("overlap", ".safetensors")
def st_offsets_overlap() -> bytes:
    header = {"a.running_mean": _st_entry(0, 16, [4]), "a.running_var": _st_entry(8, 24, [4])}
    return _safetensors(header, bytes(24))


@bomb("outside", ".safetensors")
def st_offsets_past_the_end() -> bytes:
    return _safetensors({"a.running_mean": _st_entry(0, 2**40, [2**38])}, bytes(16))


@bomb("2**63", ".safetensors")
def st_shape_product_overflows() -> bytes:
    return _safetensors({"a.running_mean": _st_entry(0, 16, [2**40, 2**40, 4])}, bytes(16))


@bomb("corrupt safetensors header", ".safetensors")
def st_shape_of_5000_digits() -> bytes:
    entry = b'{"a":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,4]}}'
    return _safetensors(entry, bytes(4))


@bomb("JSON values", ".safetensors")
def st_json_value_bomb() -> bytes:
    return _safetensors(b'{"__metadata__":{"x":[' + b"{}," * 2**21 + b"{}]}}")


@bomb("corrupt safetensors header", ".safetensors")
def st_json_nested_100k_deep() -> bytes:
    return _safetensors(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}")


@bomb("JSON values", ".safetensors.index.json")
def st_shard_index_json_value_bomb() -> bytes:
    return b'{"weight_map": {"a": "b.safetensors"}, "x": [' + b"{}," * 2**21 + b"{}]}"


# -- zip archives


def _tiny_archive() -> bytes:
    return _zip_with_pickle(mh.tiny_base().body)


@bomb("data.pkl")
def zip_stored_member_declares_4gib() -> bytes:
    return _patch_central_size(_tiny_archive(), "archive/data.pkl", 2**32 - 1)


@bomb("data.pkl")
def zip_deflated_member_declares_4gib() -> bytes:
    archive = _deflated_zip({"archive/data.pkl": mh.pickle_of(mh.tiny_base().body)})
    return _patch_central_size(archive, "archive/data.pkl", 2**32 - 1)


@bomb("opcodes")
def zip_deflate_bomb_127mib() -> bytes:
    """127 MiB of no-op opcodes deflated to ~130 KiB: within the size limit for data.pkl,
    over the opcode limit: the worst case for memory (the inflated bytes are held)."""
    return _deflated_zip({"archive/data.pkl": b"\x80\x02" + b"N0" * (127 * 2**19 - 2) + b"N."})


@bomb("byte limit")
def zip_deflate_bomb_129mib() -> bytes:
    return _deflated_zip({"archive/data.pkl": b"\x80\x02" + b"N0" * (129 * 2**19 - 2) + b"N."})


@bomb("members")
def zip_declares_2_to_the_32_members() -> bytes:
    return _zip64_member_count(_tiny_archive(), 2**32)


# -- pickles


@bomb("deep")
def pickle_nested_lists_1m_deep() -> bytes:
    return _zip_with_pickle(_state_dict_plus(b"]" * 10**6 + b"a" * (10**6 - 1)))


@bomb("deep")
def pickle_nested_dicts_1m_deep() -> bytes:
    return _zip_with_pickle(_state_dict_plus(b"}" * 10**6 + b"K\x00s" * (10**6 - 1)))


@bomb("deep")
def pickle_nested_tuples_1m_deep() -> bytes:
    return _zip_with_pickle(_state_dict_plus(b"(" * 10**6 + b"t" * 10**6))


@bomb("memory bomb")
def pickle_memo_index_2_to_the_28() -> bytes:
    return _zip_with_pickle(b"}r" + struct.pack("<I", 2**28))


@bomb("memory bomb")
def pickle_4m_empty_sets() -> bytes:
    return _zip_with_pickle(b"(" + b"\x8f" * 2**22 + b"l", protocol=4)


def _calls_on_a_memoized_container(container: bytes, func: bytes, calls: int) -> bytes:
    """`[func(big), func(big), ...]` with `big` and `func` from the memo: 5 bytes a call."""
    memo = b"r\x00\x00\x00\x00" + b"0" + func + b"r\x01\x00\x00\x00" + b"0"
    one_call = b"j\x01\x00\x00\x00" + b"j\x00\x00\x00\x00" + b"\x85R"
    return container + memo + b"(" + one_call * calls + b"l"


@bomb("memory bomb")
def pickle_set_copies_of_a_memoized_list() -> bytes:
    big = b"(" + b"K\x00" * 100_000 + b"l"
    return _zip_with_pickle(_calls_on_a_memoized_container(big, mh.glob("builtins", "set"), 20_000))


@bomb("memory bomb")
def pickle_placeholder_calls_with_a_memoized_tuple() -> bytes:
    big = b"(" + b"K\x00" * 200_000 + b"t"
    one_call = b"j\x01\x00\x00\x00j\x00\x00\x00\x00R"  # evil.Thing(*big)
    memo = b"r\x00\x00\x00\x00" + b"0" + mh.glob("evil", "Thing") + b"r\x01\x00\x00\x00" + b"0"
    return _zip_with_pickle(big + memo + b"(" + one_call * 20_000 + b"l")


@bomb("opcodes")
def pickle_9m_opcodes() -> bytes:
    return _zip_with_pickle(b"N0" * (9 * 2**20) + b"N")


@bomb("module paths")
def pickle_module_dag_2_to_the_40_paths() -> bytes:
    return _zip_with_pickle(_module_dag(40))


@bomb("state dicts")
def pickle_2000_state_dicts() -> bytes:
    return _zip_with_pickle(_many_state_dicts(2000))


@bomb("storage")
def pickle_storage_offset_past_its_end() -> bytes:
    mean = _tensor("0", 10**9, (4,), (1,))
    return _zip_with_pickle(mh.dct(*_bn_layer("bn", mean, _tensor("1", 0, (4,), (1,)))))


@bomb("expand")
def pickle_stride_0_view_of_2_to_the_21() -> bytes:
    view = _tensor("0", 0, (2**21,), (0,))
    return _zip_with_pickle(mh.dct(*_bn_layer("bn", view, _tensor("1", 0, (2**21,), (0,)))))


@bomb("channels in all")
def pickle_stride_0_view_of_2_to_the_28() -> bytes:
    view = _tensor("0", 0, (2**28,), (0,))
    return _zip_with_pickle(mh.dct(*_bn_layer("bn", view, _tensor("1", 0, (2**28,), (0,)))))


@bomb("2**63")
def pickle_shape_product_overflows() -> bytes:
    huge = _tensor("0", 0, (2**40, 2**40, 0, 4), (1, 1, 1, 1))
    return _zip_with_pickle(mh.dct(*_bn_layer("bn", huge, _tensor("1", 0, (4,), (1,)))))


@bomb("channels in all")
def pickle_1000_layers_on_one_storage() -> bytes:
    base = mh.Base("archive", b"", {"data/big": bytes(4 * 8192)})
    return mh.torch_zip(base, mh.pickle_of(_shared_storage_layers(1000, 8192)))


@bomb("storage")
def legacy_storage_offset_past_its_end() -> bytes:
    mean = mh.tensor("0", "FloatStorage", 4, (4,), legacy=True, offset=10**9)
    return mh.legacy_file(mh.tiny_state_dict(legacy=True, replace={"running_mean": mean}))


@bomb("truncated")
def legacy_storages_truncated() -> bytes:
    return mh.legacy_file(mh.tiny_state_dict(legacy=True))[:-20]


@bomb("truncated")
def legacy_pickle_without_stop() -> bytes:
    return mh.legacy_file(mh.tiny_state_dict(legacy=True))[:60] + b"N" * 2**20


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BOMBS))
def test_bomb_is_refused_cleanly_in_bounded_memory_and_time(name: str, tmp_path: Path) -> None:
    build, suffix, needle = BOMBS[name]
    path = tmp_path / f"{name}{suffix}"
    path.write_bytes(build())
    before = snapshot(path)
    result = measure(["inspect", path], tmp_path)
    MEASURED.append((name, result))
    assert not result.timed_out
    assert result.exit_code == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert len(result.error_lines) == 1, result.stderr
    assert needle.lower() in result.error_lines[0].lower(), result.error_lines[0]
    assert result.peak_mib < MEMORY_LIMIT_MIB
    assert result.seconds < SECONDS_LIMIT
    assert snapshot(path) == before


def _big_but_legitimate_archive(folder: Path) -> Path:
    """20,000 BatchNorm layers, each tensor in its own storage member (80,000 members)."""
    base = mh.Base("archive", b"")
    pairs = []
    for layer in range(20_000):
        for leaf in ("running_mean", "running_var"):
            key = f"{layer}.{leaf}"
            base.members[f"data/{key}"] = struct.pack("<4f", 0.5, 1.0, 1.5, 2.0)
            pairs.append((mh.text(f"layer{layer}.bn.{leaf}"), _tensor(key, 0, (4,), (1,))))
    body = (
        mh.call(mh.glob("collections", "OrderedDict"))
        + b"("
        + b"".join(k + v for k, v in pairs)
        + b"u"
    )
    path = folder / "many_members.pt"
    path.write_bytes(mh.torch_zip(base, mh.pickle_of(body)))
    return path


def _many_pickle_members(folder: Path) -> Path:
    """A torch zip whose 20,000 extra `.pkl` members each name a global."""
    extra = {f"archive/extra/{i}.pkl": mh.pickle_of(mh.glob("os", "system")) for i in range(20_000)}
    path = folder / "many_pickles.pt"
    path.write_bytes(_zip_with_pickle(mh.tiny_base().body, extra))
    return path


def _torchscript_code_of_blank_lines(folder: Path) -> Path:
    """A TorchScript-looking archive whose code member is 32 MiB of blank lines: the
    constants' regex must stay linear (it took quadratic time before)."""
    extra = {
        "archive/constants.pkl": mh.pickle_of(mh.tup()),
        "archive/code/__torch__/model.py": b"class Model(Module):\n" + b"\n" * 2**25,
    }
    path = folder / "blank_code.pt"
    path.write_bytes(_zip_with_pickle(mh.tiny_base().body, extra))
    return path


@pytest.mark.parametrize(
    ("build", "exit_code"),
    [
        (_big_but_legitimate_archive, 0),
        (_many_pickle_members, 1),
        (_torchscript_code_of_blank_lines, 0),
    ],
    ids=["40k-storages", "20k-pickle-members", "32MiB-blank-torchscript-code"],
)
@pytest.mark.slow
def test_thousands_of_members_are_reported_in_bounded_time(
    build: Callable[[Path], Path], exit_code: int, tmp_path: Path
) -> None:
    path = build(tmp_path)
    result = measure(["check", path, "--format", "json"], tmp_path)
    MEASURED.append((path.stem, result))
    assert result.exit_code == exit_code, result.stderr
    assert result.peak_mib < MEMORY_LIMIT_MIB and result.seconds < SECONDS_LIMIT


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    """Opening a named pipe blocks until a writer comes: bnstat must not wait for one."""
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    result = measure(["inspect", fifo], tmp_path, timeout=30)
    assert not result.timed_out
    assert result.exit_code == 2 and "not a regular file" in result.error_lines[0]
    folder = measure(["inspect", tmp_path], tmp_path, timeout=30)
    assert not folder.timed_out and folder.exit_code == 2


def pytest_terminal_summary_table() -> str:
    rows = [f"{'case':44} {'exit':>4} {'MiB':>7} {'s':>6}"]
    rows += [
        f"{name:44} {r.exit_code:>4} {r.peak_mib:7.0f} {r.seconds:6.2f}" for name, r in MEASURED
    ]
    return "\n".join(rows)


@pytest.fixture(scope="module", autouse=True)
def _print_table() -> Any:
    yield
    if os.environ.get("BNSTAT_HARDENING_TABLE") and MEASURED:
        print("\n" + pytest_terminal_summary_table())
