"""Which pickled globals are a way to run code or reach the system when the pickle is loaded.

bnstat never calls a global it does not allow (every other one becomes an inert
placeholder), but `torch.load(weights_only=False)` calls them all. The code-in-pickle
rule reports these globals, and recalibration refuses to copy a file that names them
into a new checkpoint unless told to. `getattr` is one of them, unless the reader saw
that every call it made was a harmless attribute reference (`pickle_lookups`).
"""

from __future__ import annotations

_MODULES = {
    "os", "posix", "nt", "subprocess", "sys", "importlib", "marshal", "types", "runpy",
    "pty", "socket", "ctypes", "pickle", "_pickle", "shutil", "code", "codeop",
    "webbrowser", "multiprocessing", "asyncio", "signal", "platform", "pdb", "commands",
    "popen2", "http", "urllib", "requests", "ftplib", "smtplib", "telnetlib", "bdb",
    # code run or built from text, or a command, by profilers, doc tools and installers
    "timeit", "trace", "cProfile", "profile", "pydoc", "doctest", "idlelib", "lib2to3",
    "pip", "ensurepip", "venv", "distutils", "pexpect", "pipes", "_posixsubprocess",
    "imp", "_imp", "pkgutil", "zipimport", "_frozen_importlib", "_frozen_importlib_external",
    "_interpreters", "_xxsubinterpreters", "dill", "cloudpickle", "shelve", "ssl",
}  # fmt: skip
_SUBMODULES = (  # of packages whose other modules are data
    "numpy.f2py", "numpy.testing", "torch._inductor.codecache", "torch.utils.collect_env",
    "torch.utils.bottleneck",
)  # fmt: skip
_BUILTINS = {
    "eval", "exec", "compile", "__import__", "getattr", "setattr", "delattr", "open",
    "globals", "locals", "vars", "input", "breakpoint", "memoryview", "help", "apply",
    "execfile", "file", "reload",
}  # fmt: skip
_CALLABLES = {
    "functools.partial", "functools.reduce", "operator.attrgetter", "operator.methodcaller",
    "operator.itemgetter", "_operator.attrgetter", "_operator.methodcaller",
    "_operator.itemgetter", "torch.load", "torch.hub.load", "numpy.load", "joblib.load",
    "torch.serialization.load", "torch.jit.load", "torch._C._jit_set_profiling_mode",
}  # fmt: skip


LOOKUP = " (through builtins.getattr)"  # how a harmless getattr call is named


def executes_code(qualified: str) -> bool:
    """Whether a pickled global (or an attribute reference made with getattr, named by
    `lookup_name`) is a known way to run code or reach the system."""
    module, _, name = qualified.removesuffix(LOOKUP).rpartition(".")
    root = module.split(".", 1)[0]
    if root in _MODULES or any(module == m or module.startswith(f"{m}.") for m in _SUBMODULES):
        return True
    if module in ("builtins", "__builtin__") and name in _BUILTINS:
        return True
    return qualified.removesuffix(LOOKUP) in _CALLABLES


def harmless_lookup(target: str, attribute: object) -> bool:
    """Whether `getattr(target, attribute)` with `target` a class the pickle names, its
    result never called, reaches nothing that naming the class does not: a plain
    attribute name (no dunder: `__globals__`, `__subclasses__`, ...) of a class outside
    the modules that run code and outside `builtins`."""
    return (
        isinstance(attribute, str)
        and attribute.isidentifier()
        and not attribute.startswith("__")
        and target.split(".", 1)[0] not in ("builtins", "__builtin__")
        and not executes_code(target)
        and not executes_code(f"{target}.{attribute}")
    )


def lookup_name(target: str, attribute: str) -> str:
    """A harmless getattr call, named as the attribute reference it makes."""
    return f"{target}.{attribute}{LOOKUP}"
