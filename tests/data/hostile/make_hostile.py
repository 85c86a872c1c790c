"""Write the hostile checkpoint corpus next to this file: `python make_hostile.py`.

Every file here is a torch zip archive or a legacy torch pickle whose pickles try to run
code when loaded the usual way (`torch.load(weights_only=False)`, `pickle.loads`):
through REDUCE on `os.system` and `subprocess`, `builtins.eval`/`exec`, `timeit`,
getattr and importlib chains, a method of a harmless class (`pathlib.Path.touch`)
fetched with getattr and then called, handed to `map` or set as `__setstate__`, dunder
attributes reached with getattr, code objects built with `compile` and
`types.FunctionType`, the BUILD `__setstate__` gadget, the INST/OBJ/STACK_GLOBAL
opcodes, a pickle nested in a pickle, a persistent id, a second pickle after the first,
pickles in other archive members and a `data.pkl` in an unexpected folder. Each payload,
if it ran, would create a marker file named in `manifest.json` in the working directory;
the tests run bnstat on every file and check that no marker appears, and (a positive
control) that loading the same bytes the usual way does create it, so the corpus cannot
silently go stale.

The pickles are assembled opcode by opcode (no torch needed, no class of this module is
referenced), archives get fixed timestamps, and nothing depends on the Python version,
so rerunning this script rewrites the same bytes. Two harmless files sit beside them: an
unknown class, and a method kept as an attribute (`getattr(<class>, "forward")`, never
called), each to be read with an info note (BN012), not an error. `build(name, marker,
base)` makes one case on the fly, e.g. around a real checkpoint's state dict
(`Base.from_torch_zip`).
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
ZIP_TIME = (1980, 1, 1, 0, 0, 0)

# ---------------------------------------------------------------- pickle assembly


def text(value: str) -> bytes:
    """BINUNICODE."""
    raw = value.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def raw_bytes(value: bytes) -> bytes:
    """SHORT_BINBYTES / BINBYTES."""
    if len(value) < 256:
        return b"C" + bytes([len(value)]) + value
    return b"B" + struct.pack("<I", len(value)) + value


def integer(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    body = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(body)]) + body


def glob(module: str, name: str) -> bytes:
    """GLOBAL: the callable or class `module.name`."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def lst(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"l"


def dct(*pairs: tuple[bytes, bytes]) -> bytes:
    return b"}" + (b"(" + b"".join(k + v for k, v in pairs) + b"u" if pairs else b"")


def call(func: bytes, *args: bytes) -> bytes:
    """REDUCE: `func(*args)`."""
    return func + tup(*args) + b"R"


def pickle_of(body: bytes, protocol: int = 2) -> bytes:
    return b"\x80" + bytes([protocol]) + body + b"."


NONE, FALSE, TRUE = b"N", b"\x89", b"\x88"

# ---------------------------------------------------------------- payloads


def touch(marker: str) -> str:
    return f"touch {marker}"


def python_creating(marker: str) -> str:
    return f"open({marker!r}, 'w').close()"


def _os_system(marker: str) -> bytes:
    return call(glob("os", "system"), text(touch(marker)))


def _getattr_of(module: bytes, attribute: str) -> bytes:
    return call(glob("builtins", "getattr"), module, text(attribute))


def _path(marker: str) -> bytes:
    return call(glob("pathlib", "Path"), text(marker))


def _path_touch() -> bytes:
    """`getattr(pathlib.Path, "touch")`: a plain method of a class that runs no code."""
    return _getattr_of(glob("pathlib", "Path"), "touch")


PAYLOADS: dict[str, Callable[[str], bytes]] = {
    # REDUCE on a process-spawning function
    "os.system": _os_system,
    "posix.system": lambda m: call(glob("posix", "system"), text(touch(m))),
    "subprocess.run": lambda m: call(glob("subprocess", "run"), lst(text("touch"), text(m))),
    "subprocess.check_call": lambda m: call(
        glob("subprocess", "check_call"), lst(text("touch"), text(m))
    ),
    # code from a string
    "builtins.eval": lambda m: call(glob("builtins", "eval"), text(python_creating(m))),
    "builtins.exec": lambda m: call(glob("builtins", "exec"), text(python_creating(m))),
    "__builtin__.eval": lambda m: call(glob("__builtin__", "eval"), text(python_creating(m))),
    # a module outside the usual lists that runs code from a string (once: number=1)
    "timeit.timeit": lambda m: call(
        glob("timeit", "timeit"),
        text(python_creating(m)),
        text("pass"),
        glob("time", "perf_counter"),
        integer(1),
    ),
    # getattr / importlib / operator chains to reach os.system
    "getattr-chain": lambda m: call(
        _getattr_of(call(glob("builtins", "__import__"), text("os")), "system"), text(touch(m))
    ),
    "importlib-chain": lambda m: call(
        _getattr_of(call(glob("importlib", "import_module"), text("os")), "system"),
        text(touch(m)),
    ),
    "attrgetter-chain": lambda m: call(
        call(
            call(glob("operator", "attrgetter"), text("system")),
            call(glob("importlib", "import_module"), text("os")),
        ),
        text(touch(m)),
    ),
    "functools.partial": lambda m: call(
        call(glob("functools", "partial"), glob("os", "system"), text(touch(m)))
    ),
    # getattr on a harmless class, then its result called, handed to a call that calls it,
    # or set as __setstate__ for the next BUILD to call: a plain method reaches the disk
    "getattr-called": lambda m: call(_path_touch(), _path(m)),
    "getattr-handed-on": lambda m: call(
        glob("builtins", "list"), call(glob("builtins", "map"), _path_touch(), lst(_path(m)))
    ),
    "getattr-setstate": lambda m: (
        call(glob("argparse", "Namespace"))
        + dct((text("__setstate__"), _path_touch()))
        + b"b"
        + _path(m)
        + b"b"
    ),
    # a dunder attribute of a harmless class: its module's globals, and os through them
    "getattr-dunder": lambda m: call(
        _getattr_of(
            call(
                _getattr_of(
                    _getattr_of(
                        _getattr_of(glob("argparse", "Namespace"), "__init__"), "__globals__"
                    ),
                    "get",
                ),
                text("_os"),
            ),
            "system",
        ),
        text(touch(m)),
    ),
    # a function made from a code object, then called
    "compile+FunctionType": lambda m: call(
        call(
            glob("types", "FunctionType"),
            call(
                glob("builtins", "compile"),
                text(python_creating(m)),
                text("<hostile>"),
                text("exec"),
            ),
            dct(),
        )
    ),
    # BUILD: set the instance's __setstate__ to os.system, then BUILD again with a command
    "setstate-gadget": lambda m: (
        call(glob("argparse", "Namespace"))
        + dct((text("__setstate__"), glob("os", "system")))
        + b"b"
        + text(touch(m))
        + b"b"
    ),
    # protocol 0 and 1 opcodes that call without REDUCE, protocol 4 STACK_GLOBAL
    "INST-opcode": lambda m: b"(S'" + touch(m).encode() + b"'\nios\nsystem\n",
    "OBJ-opcode": lambda m: b"(" + glob("os", "system") + text(touch(m)) + b"o",
    "STACK_GLOBAL": lambda m: text("os") + text("system") + b"\x93" + tup(text(touch(m))) + b"R",
    # a pickle inside the pickle
    "nested-pickle": lambda m: call(glob("pickle", "loads"), raw_bytes(pickle_of(_os_system(m)))),
    "nested-_pickle": lambda m: call(glob("_pickle", "loads"), raw_bytes(pickle_of(_os_system(m)))),
}

# the global each route is refused as (what bnstat's message must name)
NAMED = {
    "os.system": "os.system",
    "posix.system": "posix.system",
    "subprocess.run": "subprocess.run",
    "subprocess.check_call": "subprocess.check_call",
    "builtins.eval": "builtins.eval",
    "builtins.exec": "builtins.exec",
    "__builtin__.eval": "__builtin__.eval",
    "timeit.timeit": "timeit.timeit",
    "getattr-chain": "builtins.getattr",
    "importlib-chain": "importlib.import_module",
    "attrgetter-chain": "operator.attrgetter",
    "functools.partial": "functools.partial",
    "getattr-called": "builtins.getattr",
    "getattr-handed-on": "builtins.getattr",
    "getattr-setstate": "builtins.getattr",
    "getattr-dunder": "builtins.getattr",
    "compile+FunctionType": "types.FunctionType",
    "setstate-gadget": "os.system",
    "INST-opcode": "os.system",
    "OBJ-opcode": "os.system",
    "STACK_GLOBAL": "os.system",
    "nested-pickle": "pickle.loads",
    "nested-_pickle": "_pickle.loads",
}


def marshal_payload(marker: str) -> bytes:
    """`types.FunctionType(marshal.loads(code), {})()`: bytes tied to this Python version,
    so never part of the committed corpus; tests build it on the fly."""
    import marshal

    code = compile(python_creating(marker), "<hostile>", "exec")
    return call(
        call(
            glob("types", "FunctionType"),
            call(glob("marshal", "loads"), raw_bytes(marshal.dumps(code))),
            dct(),
        )
    )


# ---------------------------------------------------------------- a state dict to carry


@dataclass
class Base:
    """A state dict as pickle opcodes (no memo use of its own, or memo indices that the
    payloads, which use no memo, cannot clash with) plus the archive members it needs."""

    root: str
    body: bytes  # opcodes leaving the state dict on the stack
    members: dict[str, bytes] = field(default_factory=dict)  # relative to root

    @classmethod
    def from_torch_zip(cls, path: Path) -> Base:
        """The state dict of a real torch zip checkpoint (its data.pkl, its storages)."""
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            root = names[0].split("/", 1)[0]
            data = archive.read(f"{root}/data.pkl")
            members = {
                n[len(root) + 1 :]: archive.read(n) for n in names if n != f"{root}/data.pkl"
            }
        assert data[:2] == b"\x80\x02" and data[-1:] == b"."
        return cls(root, data[2:-1], members)


CHANNELS = 4
_STATS = {  # a trained-looking 4-channel BatchNorm layer, float32
    "running_mean": (0.5, -0.25, 0.125, 1.0),
    "running_var": (1.5, 0.75, 2.0, 1.25),
    "weight": (1.0, 0.9, 1.1, 0.8),
    "bias": (0.0, 0.1, -0.1, 0.05),
}


def _storages() -> list[tuple[str, str, bytes]]:
    """(key, torch storage class, raw bytes) of the tiny model's tensors."""
    found = [
        (str(i), "FloatStorage", struct.pack("<4f", *values))
        for i, values in enumerate(_STATS.values())
    ]
    return [*found, (str(len(found)), "LongStorage", struct.pack("<q", 120))]


def tensor(
    key: str,
    storage: str,
    numel: int,
    shape: tuple[int, ...],
    legacy: bool = False,
    offset: int = 0,
    stride: tuple[int, ...] | None = None,
) -> bytes:
    """`torch._utils._rebuild_tensor_v2` of a storage named by a persistent id."""
    pid = (text("storage"), glob("torch", storage), text(key), text("cpu"), integer(numel))
    persistent = tup(*pid, NONE) if legacy else tup(*pid)
    strides = stride if stride is not None else tuple(1 for _ in shape)
    return call(
        glob("torch._utils", "_rebuild_tensor_v2"),
        persistent + b"Q",
        integer(offset),
        tup(*(integer(d) for d in shape)),
        tup(*(integer(d) for d in strides)),
        FALSE,
        call(glob("collections", "OrderedDict")),
    )


def tiny_state_dict(legacy: bool = False, replace: dict[str, bytes] | None = None) -> bytes:
    """Opcodes of `{"bn.running_mean": ..., ..., "bn.num_batches_tracked": ...}`."""
    pairs = []
    names = [*_STATS, "num_batches_tracked"]
    for (key, storage, raw), name in zip(_storages(), names, strict=True):
        shape = () if name == "num_batches_tracked" else (CHANNELS,)
        numel = len(raw) // (8 if storage == "LongStorage" else 4)
        value = (replace or {}).get(name) or tensor(key, storage, numel, shape, legacy)
        pairs.append((text(f"bn.{name}"), value))
    return (
        call(glob("collections", "OrderedDict")) + b"(" + b"".join(k + v for k, v in pairs) + b"u"
    )


def tiny_base() -> Base:
    members = {f"data/{key}": raw for key, _, raw in _storages()}
    return Base("archive", tiny_state_dict(), members)


# ---------------------------------------------------------------- containers


def write_zip(members: dict[str, bytes]) -> bytes:
    """A zip archive with fixed timestamps, members stored in the given order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def torch_zip(base: Base, data_pkl: bytes, extra: dict[str, bytes] | None = None) -> bytes:
    """A torch zip archive: data.pkl first (torch finds the folder from it), then the rest."""
    members = {f"{base.root}/data.pkl": data_pkl, f"{base.root}/byteorder": b"little"}
    members |= {f"{base.root}/{name}": raw for name, raw in base.members.items()}
    members.setdefault(f"{base.root}/version", b"3\n")
    return write_zip(members | (extra or {}))


_SYS_INFO = (
    (text("protocol_version"), integer(1001)),
    (text("little_endian"), TRUE),
    (
        text("type_sizes"),
        dct((text("short"), integer(2)), (text("int"), integer(4)), (text("long"), integer(4))),
    ),
)


def legacy_file(
    root_body: bytes,
    sys_info_extra: bytes | None = None,
    keys_body: bytes | None = None,
    storages: bool = True,
) -> bytes:
    """A legacy torch file: magic, protocol, system info, the object, the storage keys,
    then each storage as an 8-byte element count and its bytes (`storages`: those of the
    tiny state dict, else none)."""
    stored = _storages() if storages else []
    sys_info = _SYS_INFO + (((text("hook"), sys_info_extra),) if sys_info_extra else ())
    keys = keys_body or lst(*(text(key) for key, _, _ in stored))
    parts = [
        pickle_of(integer(LEGACY_MAGIC)),
        pickle_of(integer(1001)),
        pickle_of(dct(*sys_info)),
        pickle_of(root_body),
        pickle_of(keys),
    ]
    for _, storage, raw in stored:
        parts.append(struct.pack("<q", len(raw) // (8 if storage == "LongStorage" else 4)) + raw)
    return b"".join(parts)


def legacy_offset_after_storages() -> int:
    return len(legacy_file(tiny_state_dict(legacy=True)))


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One hostile file: how bnstat must answer it and how to prove the payload is live.

    `expect`: "report" (read; BN011 names the globals, exit 1) or "error" (exit 2, one
    line naming the globals). `control`: "torch.load" (loading it with
    `torch.load(weights_only=False)` runs the payload), "member:NAME@OFFSET" (so does
    `pickle.loads` of that archive member from that offset) or "offset:N" (of the file's
    bytes from N).
    """

    name: str
    format: str  # "zip" or "legacy"
    expect: str
    names: tuple[str, ...]
    control: str
    build: Callable[[str, Base], bytes]


def _zip_beside(route: str) -> Callable[[str, Base], bytes]:
    def build(marker: str, base: Base) -> bytes:
        body = dct((text("state_dict"), base.body), (text("hook"), PAYLOADS[route](marker)))
        return torch_zip(base, pickle_of(body))

    return build


def _zip_alone(route: str) -> Callable[[str, Base], bytes]:
    def build(marker: str, base: Base) -> bytes:
        body = dct((text("config"), PAYLOADS[route](marker)))
        return torch_zip(base, pickle_of(body))

    return build


def _legacy_beside(route: str) -> Callable[[str, Base], bytes]:
    def build(marker: str, base: Base) -> bytes:
        body = dct(
            (text("state_dict"), tiny_state_dict(legacy=True)),
            (text("hook"), PAYLOADS[route](marker)),
        )
        return legacy_file(body)

    return build


def _legacy_alone(route: str) -> Callable[[str, Base], bytes]:
    def build(marker: str, base: Base) -> bytes:
        return legacy_file(dct((text("config"), PAYLOADS[route](marker))), storages=False)

    return build


def _zip_persistent_id(marker: str, base: Base) -> bytes:
    pid = tup(text("storage"), _os_system(marker), text("0"), text("cpu"), integer(4)) + b"Q"
    return torch_zip(base, pickle_of(dct((text("state_dict"), base.body), (text("x"), pid))))


def _zip_tensor_replaced(marker: str, base: Base) -> bytes:
    body = tiny_state_dict(replace={"running_mean": _os_system(marker)})
    return torch_zip(base, pickle_of(body))


def _zip_appended(marker: str, base: Base) -> bytes:
    return torch_zip(base, pickle_of(base.body) + pickle_of(_os_system(marker)))


def _zip_extra_members(marker: str, base: Base) -> bytes:
    extra = {
        f"{base.root}/extra/data.pkl": pickle_of(
            call(glob("posix", "system"), text(touch(marker)))
        ),
        f"{base.root}/.data/model.pkl": pickle_of(
            call(glob("builtins", "exec"), text(python_creating(marker)))
        ),
    }
    return torch_zip(base, pickle_of(base.body), extra)


def _zip_first_folder_evil(marker: str, base: Base) -> bytes:
    evil = {"evil/data.pkl": pickle_of(_os_system(marker))}
    rest = torch_zip(base, pickle_of(base.body))
    with zipfile.ZipFile(io.BytesIO(rest)) as archive:
        evil |= {n: archive.read(n) for n in archive.namelist()}
    return write_zip(evil)


def _zip_nested_folder(marker: str, base: Base) -> bytes:
    members = {f"{base.root}/sub/data.pkl": pickle_of(_os_system(marker))}
    members |= {f"{base.root}/{name}": raw for name, raw in base.members.items()}
    return write_zip(members)


def _zip_unknown_global(marker: str, base: Base) -> bytes:
    config = call(glob("mypackage.config", "TrainConfig"), dct((text("lr"), integer(3))))
    return torch_zip(
        base, pickle_of(dct((text("state_dict"), base.body), (text("config"), config)))
    )


def _zip_method_reference(marker: str, base: Base) -> bytes:
    """A head module pickled with a method kept as an attribute, as protocol 2 pickles it:
    `getattr(<its class>, "forward")`, never called."""
    head_class = glob("mypackage.heads", "Detect")
    head = call(head_class) + dct((text("forward"), _getattr_of(head_class, "forward"))) + b"b"
    return torch_zip(base, pickle_of(dct((text("state_dict"), base.body), (text("head"), head))))


def _legacy_sys_info(marker: str, base: Base) -> bytes:
    return legacy_file(tiny_state_dict(legacy=True), sys_info_extra=_os_system(marker))


def _legacy_keys(marker: str, base: Base) -> bytes:
    return legacy_file(tiny_state_dict(legacy=True), keys_body=_os_system(marker))


def _legacy_appended(marker: str, base: Base) -> bytes:
    return legacy_file(tiny_state_dict(legacy=True)) + pickle_of(_os_system(marker))


def _legacy_persistent_id(marker: str, base: Base) -> bytes:
    pid = tup(text("storage"), _os_system(marker), text("0"), text("cpu"), integer(4), NONE)
    return legacy_file(dct((text("x"), pid + b"Q")), storages=False)


def _cases() -> list[Case]:
    cases = []
    for route in PAYLOADS:
        slug = route.replace(".", "_").replace("+", "_")
        named = (NAMED[route],)
        for variant, expect in (("beside_tensors", "report"), ("alone", "error")):
            zip_build = (_zip_beside if expect == "report" else _zip_alone)(route)
            legacy_build = (_legacy_beside if expect == "report" else _legacy_alone)(route)
            cases += [
                Case(f"zip_{slug}_{variant}", "zip", expect, named, "torch.load", zip_build),
                Case(
                    f"legacy_{slug}_{variant}", "legacy", expect, named, "torch.load", legacy_build
                ),
            ]
    after_data_pkl = f"member:archive/data.pkl@{len(pickle_of(tiny_base().body))}"
    after_storages = f"offset:{legacy_offset_after_storages()}"
    os_system = ("os.system",)
    return [
        *cases,
        Case("zip_persistent_id", "zip", "error", os_system, "torch.load", _zip_persistent_id),
        Case("zip_tensor_replaced", "zip", "report", os_system, "torch.load", _zip_tensor_replaced),
        Case("zip_appended_pickle", "zip", "report", os_system, after_data_pkl, _zip_appended),
        Case(
            "zip_extra_pickle_members",
            "zip",
            "report",
            ("posix.system", "builtins.exec"),
            "member:archive/extra/data.pkl@0",
            _zip_extra_members,
        ),
        Case(
            "zip_first_folder_evil",
            "zip",
            "error",
            os_system,
            "member:evil/data.pkl@0",
            _zip_first_folder_evil,
        ),
        Case(
            "zip_data_pkl_in_subfolder",
            "zip",
            "error",
            os_system,
            "member:archive/sub/data.pkl@0",
            _zip_nested_folder,
        ),
        Case(
            "legacy_sys_info_payload", "legacy", "report", os_system, "torch.load", _legacy_sys_info
        ),
        Case(
            "legacy_storage_keys_payload", "legacy", "error", os_system, "torch.load", _legacy_keys
        ),
        Case(
            "legacy_appended_pickle",
            "legacy",
            "report",
            os_system,
            after_storages,
            _legacy_appended,
        ),
        Case(
            "legacy_persistent_id",
            "legacy",
            "error",
            os_system,
            "torch.load",
            _legacy_persistent_id,
        ),
    ]


CASES = {case.name: case for case in _cases()}
# Not hostile: a checkpoint whose tensors are fine and whose pickle names an unknown,
# harmless class must be read, with an info note (BN012) naming it.
UNKNOWN_GLOBAL = Case(
    "zip_unknown_global",
    "zip",
    "report",
    ("mypackage.config.TrainConfig",),
    "",
    _zip_unknown_global,
)


# Not hostile either: a method kept as an attribute, pickled through getattr: read, with
# the reference named in the info note (BN012), not a code-in-pickle error.
METHOD_REFERENCE = Case(
    "zip_getattr_method_reference",
    "zip",
    "report",
    ("mypackage.heads.Detect.forward (through builtins.getattr)",),
    "",
    _zip_method_reference,
)
HARMLESS = {case.name: case for case in (UNKNOWN_GLOBAL, METHOD_REFERENCE)}


def marker_name(case: str) -> str:
    return f"MARKER-{case}"


def build(name: str, marker: str | None = None, base: Base | None = None) -> bytes:
    """The bytes of one case; `marker` defaults to the corpus's marker name."""
    case = HARMLESS[name] if name in HARMLESS else CASES[name]
    return case.build(marker or marker_name(name), base or tiny_base())


def main(folder: Path = HERE) -> None:
    manifest = []
    for case in [*CASES.values(), *HARMLESS.values()]:
        filename = case.name + ".pt"
        (folder / filename).write_bytes(build(case.name))
        manifest.append(
            {
                "file": filename,
                "format": case.format,
                "expect": case.expect,
                "names": list(case.names),
                "marker": marker_name(case.name),
                "control": case.control,
            }
        )
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum((folder / m["file"]).stat().st_size for m in manifest)
    print(f"wrote {len(manifest)} files ({total} bytes) and manifest.json to {folder}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
