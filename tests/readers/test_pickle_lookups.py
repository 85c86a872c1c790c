"""getattr in pickles: a method kept as an attribute is a reference (BN012), never a
code-in-pickle error; everything that can run code through getattr stays BN011.

The files are written by torch.save; the hostile routes (a result called, handed on, set
as `__setstate__`, a dunder name) are in the hostile corpus, checked by the hardening
tests, and the decisions here name each condition.
"""

from __future__ import annotations

import json

import pytest
import torch
from zoo import SAMPLES, ManyNorms

from bnstat.readers.pickle_risk import executes_code, harmless_lookup, lookup_name
from bnstat.stages.open_checkpoint import open_checkpoint

REFERENCE = "zoo.ManyNorms.forward (through builtins.getattr)"


def _state_dict() -> dict[str, torch.Tensor]:
    return dict(torch.load(SAMPLES / "healthy.pt", weights_only=True))


def _rules(cli, path) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    result = cli("check", path, "--format", "json")
    (entry,) = json.loads(result.stdout)["checkpoints"]
    return [(f["rule"], f["message"]) for f in entry["findings"]]


def test_a_method_kept_as_an_attribute_is_a_reference_not_code(cli, write_pt):
    """Protocol 2 pickles `ManyNorms.forward` as `getattr(ManyNorms, "forward")`."""
    path = write_pt({"state_dict": _state_dict(), "forward": ManyNorms.forward})
    assert b"getattr" in path.read_bytes()
    with open_checkpoint(path) as raw:
        assert raw.refused_globals == ("zoo.ManyNorms", REFERENCE)
    ((rule, message),) = _rules(cli, path)
    assert rule == "BN012" and REFERENCE in message


class Head:
    """An object a checkpoint pickles whole, with one of its bound methods beside it."""

    def forward(self) -> None:
        pass


def test_a_bound_method_of_a_pickled_object_is_a_reference_too(cli, write_pt):
    path = write_pt({"state_dict": _state_dict(), "forward": Head().forward})
    ((rule, message),) = _rules(cli, path)
    assert rule == "BN012" and "Head().forward (through builtins.getattr)" in message


def test_a_plain_state_dict_names_nothing(cli, write_pt):
    assert _rules(cli, write_pt(_state_dict())) == []


class _CallsALookup:
    """Pickles as `getattr(ManyNorms, "forward")(None)`: the looked-up method is called."""

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return ManyNorms.forward, (None,)


def test_a_looked_up_method_that_is_called_is_code(cli, write_pt):
    path = write_pt({"state_dict": _state_dict(), "hook": _CallsALookup()}, name="called.pt")
    (message,) = [message for rule, message in _rules(cli, path) if rule == "BN011"]
    assert "__builtin__.getattr" in message  # how protocol 2 spells builtins.getattr


@pytest.mark.parametrize(
    ("target", "attribute", "harmless"),
    [
        ("pkg.heads.Detect", "forward", True),
        ("pkg.heads.Detect()", "forward", True),  # a bound method of an object it built
        ("pkg.heads.Detect", "__globals__", False),  # dunder: the module's namespace
        ("pkg.heads.Detect", "__init__", False),
        ("pkg.heads.Detect", "a.b", False),  # not an attribute name
        ("pkg.heads.Detect", 3, False),
        ("os.path", "join", False),  # a module that reaches the system
        ("subprocess.Popen", "wait", False),
        ("builtins.object", "mro", False),  # builtins: __import__, eval and friends are near
        ("torch.hub", "load", False),  # the attribute itself runs code
        ("os.system()", "x", False),  # an object a dangerous call returned
    ],
)
def test_which_lookups_are_harmless(target, attribute, harmless):
    assert harmless_lookup(target, attribute) is harmless


def test_a_lookup_is_judged_by_what_it_names_whatever_the_file_spells():
    assert not executes_code(lookup_name("pkg.heads.Detect", "forward"))
    assert executes_code(lookup_name("torch.hub", "load"))
    assert executes_code("os.system (through builtins.getattr)")  # a global spelled so


@pytest.mark.parametrize(
    "name",
    [
        "timeit.timeit",  # runs a statement given as text
        "trace.Trace",
        "cProfile.run",
        "pydoc.pipepager",  # a shell command
        "_posixsubprocess.fork_exec",
        "dill._dill._create_function",  # a function from a code object
        "numpy.f2py.crackfortran.getlincoef",  # eval on text
        "torch._inductor.codecache.compile_file",  # a compiler command line
        "_operator.attrgetter",
        "joblib.load",  # a pickle inside the pickle
    ],
)
def test_globals_the_common_scanners_flag_run_code(name):
    assert executes_code(name)


@pytest.mark.parametrize(
    "name",
    ["pathlib.PosixPath", "argparse.Namespace", "numpy.core.multiarray._reconstruct",
     "numpy.dtype", "torch.nn.modules.conv.Conv2d", "collections.defaultdict"],
)  # fmt: skip
def test_the_data_checkpoints_pickle_does_not(name):
    assert not executes_code(name)
