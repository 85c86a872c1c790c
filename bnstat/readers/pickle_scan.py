"""Walk a pickle's opcodes before it is unpickled, to bound what unpickling can cost.

The C unpickler trusts the file about sizes: one `LONG_BINPUT` opcode with a large memo
index makes it allocate (and zero) an array of twice that many pointers, gigabytes for
ten bytes of input, and a megabyte of one-byte `EMPTY_SET` opcodes becomes hundreds of
megabytes of set objects. `PickleScanner` reads the opcodes without running any of them,
models the unpickler's stack, marks and memo, and charges each opcode what it makes the
unpickler allocate to a `PickleBudget`. The budget is shared with the safe unpickler,
which charges the calls it makes while the pickle runs (a call can copy an argument that
the memo hands out again and again), so the whole load stays within a fixed bound.

The scanner also finds where a pickle ends (its STOP opcode), so that a file holding a
run of pickles is read one pickle at a time, and lists the globals a pickle names without
loading it (`scan_globals`), for pickles bnstat does not otherwise read.
"""

from __future__ import annotations

import pickletools

from bnstat.errors import CheckpointError

MAX_PICKLE_MEMORY = 384 * 2**20  # what unpickling one pickle may allocate, in bytes
MAX_PICKLE_OPS = 2**23  # opcodes in one pickle; legitimate ones have ~1 per 3 bytes

_POINTER = 8
_INITIAL_MEMO = 32  # the C unpickler's first memo array size
_LINE, _TWO_LINES, _COUNTED = -1, -2, -100

# Bytes an opcode makes the unpickler allocate, beyond a pointer on its stack: CPython
# object sizes, rounded up. Calls and imports get a flat allowance here; the variable
# part of a call (its arguments) is charged by the safe unpickler when it happens.
_OBJECT_BYTES = {
    "EMPTY_DICT": 72, "DICT": 72, "EMPTY_LIST": 56, "LIST": 56, "EMPTY_SET": 216,
    "FROZENSET": 216, "TUPLE": 48, "TUPLE1": 48, "TUPLE2": 56, "TUPLE3": 64,
    "BININT": 32, "BININT2": 32, "INT": 32, "LONG": 32, "LONG1": 32, "LONG4": 32,
    "FLOAT": 24, "BINFLOAT": 24, "STRING": 40, "BINSTRING": 40, "SHORT_BINSTRING": 40,
    "BINBYTES": 40, "SHORT_BINBYTES": 40, "BINBYTES8": 40, "BYTEARRAY8": 64,
    "UNICODE": 80, "BINUNICODE": 80, "SHORT_BINUNICODE": 80, "BINUNICODE8": 80,
    "REDUCE": 256, "NEWOBJ": 256, "NEWOBJ_EX": 256, "OBJ": 256, "INST": 2304,
    "GLOBAL": 2048, "STACK_GLOBAL": 2048, "EXT1": 2048, "EXT2": 2048, "EXT4": 2048,
    "PERSID": 512, "BINPERSID": 512, "READONLY_BUFFER": 200, "MARK": 8,
}  # fmt: skip
# Bytes per stack item an opcode that consumes a run of items (or one item) stores.
_ITEM_BYTES = {
    "APPENDS": 9, "APPEND": 9, "LIST": 9, "TUPLE": 8, "OBJ": 8, "INST": 8,
    "SETITEMS": 36, "SETITEM": 72, "DICT": 36, "ADDITEMS": 64, "FROZENSET": 64,
}  # fmt: skip


# What else an opcode does, beyond its stack effect and cost.
_PLAIN, _BYTES, _TEXT, _PUT, _MEMOIZE, _GET, _GLOBAL, _STACK_GLOBAL, _POP, _MARK, _STOP = range(11)
_KINDS = {
    **dict.fromkeys(("S", "T", "U", "B", "C", "\x8e", "\x96", "L", "\x8a", "\x8b"), _BYTES),
    **dict.fromkeys(("V", "X", "\x8c", "\x8d"), _TEXT),
    **dict.fromkeys(("p", "q", "r"), _PUT),
    **dict.fromkeys(("g", "h", "j"), _GET),
    "\x94": _MEMOIZE, "c": _GLOBAL, "i": _GLOBAL, "\x93": _STACK_GLOBAL, "0": _POP,
    "(": _MARK, ".": _STOP,
}  # fmt: skip
_MEMO_TEXTS = 4096  # memoized strings remembered to name STACK_GLOBAL's arguments

# One row per opcode byte: (argument layout, kind, change of stack height, bytes
# allocated, bytes per item consumed, items consumed under the MARK it consumes back to
# (-1: it does not), items pushed, length prefix is signed, name).
_Row = tuple[int, int, int, int, int, int, int, bool, str]


def _arg_layout(info: pickletools.OpcodeInfo) -> int:
    """Fixed length >= 0, _LINE, _TWO_LINES, or _COUNTED - (width of a length prefix)."""
    n = info.arg.n if info.arg is not None else 0
    if n == pickletools.UP_TO_NEWLINE:
        return _TWO_LINES if info.code in ("c", "i") else _LINE
    if n >= 0:
        return n
    widths = {
        pickletools.TAKEN_FROM_ARGUMENT1: 1,
        pickletools.TAKEN_FROM_ARGUMENT4: 4,
        pickletools.TAKEN_FROM_ARGUMENT4U: 4,
        pickletools.TAKEN_FROM_ARGUMENT8U: 8,
    }
    return _COUNTED - widths[n]


def _op_table() -> list[_Row | None]:
    table: list[_Row | None] = [None] * 256
    for info in pickletools.opcodes:
        before = [s.name for s in info.stack_before]
        pushes = 0 if info.name == "MARK" else len(info.stack_after)
        kind = _KINDS.get(info.code, _PLAIN)
        table[ord(info.code)] = (
            _arg_layout(info),
            kind,
            pushes - len(before),
            _OBJECT_BYTES.get(info.name, 0) + _POINTER * pushes,
            _ITEM_BYTES.get(info.name, 0),
            before.index("mark") if "mark" in before else -1,
            pushes,
            info.arg is not None and info.arg.n == pickletools.TAKEN_FROM_ARGUMENT4,
            info.name,
        )
    return table


_OPS = _op_table()
# Opcodes whose whole effect is a fixed step, a stack change and a cost: (step, change,
# cost) for the scanner's fast path. Memo reads count only when naming STACK_GLOBAL's.
_Simple = tuple[int, int, int]


def _simple_table(naming: bool) -> list[_Simple | None]:
    simple: list[_Simple | None] = [None] * 256
    plain = (_PLAIN,) if naming else (_PLAIN, _GET)
    for code, row in enumerate(_OPS):
        if row is not None and row[1] in plain and row[0] >= 0 and row[5] < 0:
            simple[code] = (1 + row[0], row[2], row[3] + row[4])
    return simple


_SIMPLE = _simple_table(naming=False)
_SIMPLE_NAMING = _simple_table(naming=True)
_BINPUT, _LONG_BINPUT, _MARK_CODE, _TUPLE, _BINUNICODE = map(ord, "qr(tX")
_TUPLE_ROW, _BINUNICODE_ROW = _OPS[_TUPLE], _OPS[_BINUNICODE]


class PickleBudget:
    """Bytes that loading one pickle may allocate; charging past the limit refuses it.

    `ops_left` is for loads that scan several pickles against one budget (the torch
    streams nested in a plain pickle): the opcodes their scanners may still walk.
    """

    def __init__(self, limit: int = MAX_PICKLE_MEMORY) -> None:
        self.limit = limit
        self.used = 0
        self.ops_left = MAX_PICKLE_OPS

    def charge(self, nbytes: int, what: str) -> None:
        self.used += nbytes
        if self.used > self.limit:
            self.refuse(what)

    def refuse(self, what: str) -> None:
        raise CheckpointError(
            f"the pickle would need more than {self.limit // 2**20} MiB to load "
            f"({what}): refused as a memory bomb"
        )


def _corrupt(message: str, pos: int) -> CheckpointError:
    return CheckpointError(f"corrupt pickle: {message} at byte {pos}")


class PickleScanner:
    """Walks one pickle's opcodes, charging a budget; resumable as more bytes arrive.

        `scan(data)` returns the offset just after the STOP opcode, or None when `data` ends
        before the pickle does; then call it again with a longer `data` (same start): it
        resumes at the opcode it could not finish, and `needed` says how long `data` must be
        to finish it. `globals` lists the globals named so far (those of STACK_GLOBAL only when
    `naming`, which costs time).
    """

    def __init__(
        self,
        budget: PickleBudget | None = None,
        max_ops: int = MAX_PICKLE_OPS,
        naming: bool = False,
        start: int = 0,
    ) -> None:
        self.budget = budget if budget is not None else PickleBudget()
        self.max_ops = max_ops
        self._naming = naming  # track strings to name STACK_GLOBAL's targets
        self.pos = start
        self.needed = 0
        self.ops = 0
        self.globals: list[tuple[str, str]] = []  # (module, name)
        self._height = 0
        self._marks: list[int] = []
        self._memo_size = _INITIAL_MEMO
        self._memo_puts = 0
        self._memo_texts: dict[int, str | None] = {}
        self._texts: list[str | None] = [None, None]  # the last two pushed, if strings

    def scan(self, data: bytes) -> int | None:  # one flat loop: it runs once per opcode
        # The stack model matches the unpickler's on every pickle the unpickler accepts;
        # where they part, the unpickler refuses the pickle at that opcode, so the model
        # does not check for underflows itself.
        table, budget, marks = _OPS, self.budget, self._marks
        pos, end, height, ops, max_ops = self.pos, len(data), self._height, self.ops, self.max_ops
        used, limit, memo_size, naming = budget.used, budget.limit, self._memo_size, self._naming
        simple = _SIMPLE_NAMING if naming else _SIMPLE
        try:
            while pos < end:
                code = data[pos]
                fast = simple[code]
                if fast is not None:  # the common opcodes, with nothing else to look at
                    step, change, fixed = fast
                    if pos + step > end:
                        self.needed = pos + step
                        return None
                    height += change
                    used += fixed
                    ops += 1
                    if used > limit or ops > max_ops:
                        self._refuse(used, ops, table[code][-1], pos)  # type: ignore[index]
                    pos += step
                    continue
                if code in (_LONG_BINPUT, _BINPUT) and not naming:
                    step = 5 if code == _LONG_BINPUT else 2
                    if pos + step > end:
                        self.needed = pos + step
                        return None
                    index = int.from_bytes(data[pos + 1 : pos + step], "little")
                    if index >= memo_size:  # the unpickler grows its memo array to 2x
                        used += _POINTER * (2 * index - memo_size)
                        memo_size = 2 * index
                    self._memo_puts += 1
                    ops += 1
                    if used > limit or ops > max_ops:
                        self._refuse(used, ops, "LONG_BINPUT" if step == 5 else "BINPUT", pos)
                    pos += step
                    continue
                if code == _MARK_CODE:
                    marks.append(height)
                    ops += 1
                    used += _POINTER
                    pos += 1
                    continue
                if code == _TUPLE and marks and not naming:
                    mark = marks.pop()
                    used += _TUPLE_ROW[3] + _TUPLE_ROW[4] * max(0, height - mark)  # type: ignore[index]
                    height = mark + 1
                    ops += 1
                    if used > limit or ops > max_ops:
                        self._refuse(used, ops, "TUPLE", pos)
                    pos += 1
                    continue
                if code == _BINUNICODE and not naming and pos + 5 <= end:
                    length = 5 + int.from_bytes(data[pos + 1 : pos + 5], "little")
                    if pos + length > end:
                        self.needed = pos + length
                        return None
                    wide = length >= 4096 and not data[pos + 1 : pos + length].isascii()
                    used += _BINUNICODE_ROW[3] + (4 * length if wide else length)  # type: ignore[index]
                    height += 1
                    ops += 1
                    if used > limit or ops > max_ops:
                        self._refuse(used, ops, "BINUNICODE", pos)
                    pos += length
                    continue
                row = table[code]
                if row is None:
                    raise _corrupt(f"unknown opcode {data[pos]:#04x}", pos)
                arg, kind, delta, cost, item, below, pushes, signed, name = row
                if arg >= 0:
                    arg_end = pos + 1 + arg
                elif arg < _TWO_LINES:
                    arg_end = pos + 1 + _COUNTED - arg
                    if arg_end <= end:
                        length = int.from_bytes(data[pos + 1 : arg_end], "little", signed=signed)
                        if length < 0:
                            raise _corrupt(f"{name} with a negative length", pos)
                        arg_end += length
                else:
                    newline = data.find(b"\n", pos + 1)
                    if newline >= 0 and arg == _TWO_LINES:
                        newline = data.find(b"\n", newline + 1)
                    arg_end = newline + 1 if newline >= 0 else end + 1
                if arg_end > end:
                    self.needed = arg_end
                    return None
                ops += 1
                if below < 0:
                    if kind == _POP and marks and height == marks[-1]:
                        marks.pop()  # POP on an empty mark drops the mark, as the unpickler does
                    else:
                        height += delta
                        cost += item
                elif marks:
                    mark = marks.pop()
                    cost += item * max(0, height - mark)
                    height = mark - below + pushes
                else:
                    raise _corrupt(f"{name} without a MARK", pos)
                if kind:
                    if kind in (_PUT, _MEMOIZE):
                        if kind == _MEMOIZE:
                            index = self._memo_puts
                        elif arg == 1:
                            index = data[pos + 1]
                        elif arg == 4:
                            index = int.from_bytes(data[pos + 1 : arg_end], "little")
                        else:
                            index = _index(data, pos, arg_end)
                        if index >= memo_size:  # the unpickler grows its memo array to 2x
                            cost += _POINTER * (2 * index - memo_size)
                            memo_size = 2 * index
                        self._memo_puts += 1
                        if naming:
                            self._name_memo(index)
                    elif kind == _TEXT:
                        length = arg_end - pos
                        ascii = length < 4096 or data[pos + 1 : arg_end].isascii()
                        cost += length if ascii else 4 * length  # one wide char widens all
                    elif kind == _MARK:
                        marks.append(height)
                    elif kind == _BYTES:
                        cost += arg_end - pos
                    elif kind == _STOP:
                        used += cost
                        pos = arg_end
                        return pos
                    elif kind == _GLOBAL:
                        module, _, attribute = data[pos + 1 : arg_end - 1].partition(b"\n")
                        self.globals.append((_decode(module), _decode(attribute)))
                    elif kind == _STACK_GLOBAL:
                        module_name, attribute_name = self._texts
                        self.globals.append((module_name or "?", attribute_name or "?"))
                if naming and pushes:
                    self._name_push(kind, data, pos, arg_end, arg)
                used += cost
                if used > limit or ops > max_ops:
                    self._refuse(used, ops, name, pos)
                pos = arg_end
            self.needed = pos + 1
            return None
        finally:
            self.pos, self._height, self.ops, self._memo_size = pos, height, ops, memo_size
            budget.used = used

    def _refuse(self, used: int, ops: int, name: str, pos: int) -> None:
        if ops > self.max_ops:
            raise CheckpointError(
                f"the pickle has more than {self.max_ops} opcodes: refused as a time bomb"
            )
        self.budget.used = used
        self.budget.refuse(f"{name} at byte {pos}")

    def _name_memo(self, index: int) -> None:
        if len(self._memo_texts) < _MEMO_TEXTS:
            self._memo_texts[index] = self._texts[1]

    def _name_push(self, kind: int, data: bytes, pos: int, arg_end: int, arg: int) -> None:
        """Remember the last two strings pushed: STACK_GLOBAL's module and name."""
        text = None
        if kind == _TEXT:
            text = _text(data[pos + 1 : arg_end], arg)
        elif kind == _GET:
            try:
                text = self._memo_texts.get(_index(data, pos, arg_end))
            except CheckpointError:
                text = None  # an invalid index: the unpickler refuses the GET, as when not naming
        self._texts = [self._texts[1], text]


def _index(data: bytes, pos: int, arg_end: int) -> int:
    """The memo index of a PUT or GET opcode."""
    if data[pos] in (0x70, 0x67):  # PUT, GET: a decimal line
        try:
            index = int(data[pos + 1 : arg_end])
        except ValueError:
            raise _corrupt("invalid memo index", pos) from None
    else:
        index = int.from_bytes(data[pos + 1 : arg_end], "little")
    if index < 0:
        raise _corrupt("negative memo index", pos)
    return index


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").strip()


def _text(payload: bytes, layout: int) -> str | None:
    """A short string argument (a candidate module or attribute name), else None."""
    if len(payload) > 256:
        return None
    if layout == _LINE:
        return payload.decode("raw_unicode_escape", "replace").strip()
    return _decode(payload[_COUNTED - layout :])


def scan_globals(data: bytes, max_ops: int = MAX_PICKLE_OPS) -> list[tuple[str, str]]:
    """The globals named by the run of pickles in `data`, read without loading them.

    A best effort for bytes bnstat does not load (what follows a pickle's STOP, pickle
    members it does not read): stops quietly at whatever does not parse as a pickle, or
    after `max_ops` opcodes in all.
    """
    found: list[tuple[str, str]] = []
    budget, start = PickleBudget(), 0
    while start < len(data) and max_ops > 0:
        scanner = PickleScanner(budget, max_ops, naming=True, start=start)
        try:
            end = scanner.scan(data)
        except CheckpointError:
            end = None
        found += scanner.globals
        if end is None:
            break
        start, max_ops = end, max_ops - scanner.ops
    return list(dict.fromkeys(found))
