"""Which pickled globals are a way to run code or reach the system when the pickle is loaded.

bnstat never calls a global it does not allow (every other one becomes an inert
placeholder), but `torch.load(weights_only=False)` calls them all. The code-in-pickle
rule reports these globals, and recalibration refuses to copy a file that names them
into a new checkpoint unless told to.
"""

from __future__ import annotations

_MODULES = {
    "os", "posix", "nt", "subprocess", "sys", "importlib", "marshal", "types", "runpy",
    "pty", "socket", "ctypes", "pickle", "_pickle", "shutil", "code", "codeop",
    "webbrowser", "multiprocessing", "asyncio", "signal", "platform", "pdb", "commands",
    "popen2", "http", "urllib", "requests", "ftplib", "smtplib", "telnetlib", "bdb",
}  # fmt: skip
_BUILTINS = {
    "eval", "exec", "compile", "__import__", "getattr", "setattr", "delattr", "open",
    "globals", "locals", "vars", "input", "breakpoint", "memoryview", "help", "apply",
    "execfile", "file", "reload",
}  # fmt: skip
_CALLABLES = {
    "functools.partial", "functools.reduce", "operator.attrgetter", "operator.methodcaller",
    "operator.itemgetter", "torch.load", "torch.hub.load", "numpy.load",
    "torch.serialization.load", "torch.jit.load", "torch._C._jit_set_profiling_mode",
}  # fmt: skip


def executes_code(qualified: str) -> bool:
    """Whether a pickled global is a known way to run code or reach the system."""
    module, _, name = qualified.rpartition(".")
    root = module.split(".", 1)[0]
    if root in _MODULES:
        return True
    if module in ("builtins", "__builtin__") and name in _BUILTINS:
        return True
    return qualified in _CALLABLES
