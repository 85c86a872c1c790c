"""What reads each normalization layer's output in a TorchScript archive, from its code.

A TorchScript archive keeps no serialized graph: its `code/` members are the program, in
the Python syntax TorchScript prints for scripted and traced models alike. They are
parsed here with `ast` (parsing runs nothing) and every `forward` method is evaluated
symbolically: each value gets an id, and each call records who reads which value. A
call `(member).forward(x)` into a submodule hands `x` to that module's code, a `return`
hands the value back to the caller, so a layer's output is followed across modules
(`Sequential` returning its BatchNorm's output to a parent that applies a ReLU). Module
classes whose name says what they do (ReLU, SiLU, Dropout, Identity) count as that op.

Code the analysis does not understand only makes followers unknown: the rules then
phrase their findings conditionally, as for a state dict.
"""

from __future__ import annotations

import ast
from collections.abc import Container, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import cast

from bnstat.readers.base import ModuleConstants
from bnstat.readers.followers import Use, follower_of, knows
from bnstat.readers.torchscript_flow import CallUse, Method, evaluate

MAX_GRAPH_CODE = 4 * 2**20  # characters of code parsed for the graph, in all
MAX_STACKS = 64  # call chains followed to one layer (a module called from many places)
MAX_MODULES = 2**16  # submodules looked at below the root
MAX_GRAPH_STEPS = 2**20  # steps of all graph walks in one archive (a few per op per layer)

# torch.nn's own modules are named by their class (Conv2d, Linear); only its containers
# (Sequential, ModuleList) are looked into, like the model's own classes
TORCH_MODULES = "__torch__.torch.nn.modules."
TORCH_CONTAINERS = "__torch__.torch.nn.modules.container."

Frame = tuple[str, str, int]  # class, method, value in the caller receiving its result
Stack = tuple[Frame, ...]


@dataclass
class _Class:
    members: dict[str, str] = field(default_factory=dict)  # member name -> qualified class
    methods: dict[str, Method] = field(default_factory=dict)


def parse_classes(members: Mapping[str, str]) -> dict[str, _Class]:
    """Classes of the archive's code members (`code/__torch__/...py` -> text), by qualified
    name; a member that does not parse is left out."""
    classes: dict[str, _Class] = {}
    budget = MAX_GRAPH_CODE
    for member, source in members.items():
        budget -= len(source)
        if budget < 0:
            return {}
        module = member.removeprefix("code/").removesuffix(".py").replace("/", ".")
        try:
            tree = ast.parse(source)
            parsed = {
                f"{module}.{c.name}": _class(c) for c in tree.body if isinstance(c, ast.ClassDef)
            }
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        classes.update(parsed)
    return classes


def _class(node: ast.ClassDef) -> _Class:
    found = _Class()
    for statement in node.body:
        member = _member_annotation(statement)
        if member is not None:
            found.members[member[0]] = member[1]
        elif isinstance(statement, ast.FunctionDef) and statement.name.startswith("forward"):
            found.methods[statement.name] = evaluate(statement)
    return found


def _member_annotation(statement: ast.stmt) -> tuple[str, str] | None:
    """(name, class) of `name : __torch__.X`, or of `__annotations__["0"] = __torch__.X`
    (how TorchScript declares members whose names are not identifiers)."""
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        name, annotation = statement.target.id, statement.annotation
    elif (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(target := statement.targets[0], ast.Subscript)
        and _dotted(target.value) == "__annotations__"
        and isinstance(target.slice, ast.Constant)
        and isinstance(target.slice.value, str)
    ):
        name, annotation = target.slice.value, statement.value
    else:
        return None
    dotted = _dotted(annotation)
    return (name, dotted) if dotted is not None and dotted.startswith("__torch__.") else None


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


class _OutOfSteps(Exception):
    """The graph walks of one archive took more steps than MAX_GRAPH_STEPS."""


class _Graph:
    """The `uses` of `follower_of` over (call stack, value) keys.

    Every step of every walk is counted against one budget for the archive, so hostile
    code (a module called from thousands of places, thousands of layers) cannot make the
    walks slow: past the budget the remaining layers' followers stay unknown.
    """

    def __init__(self, classes: Mapping[str, _Class]) -> None:
        self.classes = classes
        self._steps = 0

    def _step(self, count: int = 1) -> None:
        self._steps += count
        if self._steps > MAX_GRAPH_STEPS:
            raise _OutOfSteps

    def member_class(self, owner: str, dotted: str) -> str | None:
        current: str | None = owner
        for part in dotted.split("."):
            known = self.classes.get(current) if current is not None else None
            current = known.members.get(part) if known is not None else None
        return current

    def uses(self, key: Hashable) -> Sequence[Use]:
        stack, value = cast(tuple[Stack, int], key)
        owner, name, _ = stack[-1]
        method = self.classes[owner].methods[name]
        self._step(1 + len(method.uses.get(value, ())))
        found: list[Use] = []
        for use in method.uses.get(value, []):
            if isinstance(use, CallUse):
                found.append(self._into(stack, use))
            else:
                op, result = use
                found.append((op, None if result is None else (stack, result)))
        if value in method.returns:
            found.append(("output", None) if len(stack) == 1 else ("", (stack[:-1], stack[-1][2])))
        return found

    def _into(self, stack: Stack, use: CallUse) -> Use:
        """A value handed to a submodule: its class's op, or the value inside its code."""
        child = self.member_class(stack[-1][0], use.member)
        known = self.classes.get(child) if child is not None else None
        callee = known.methods.get(use.method) if known is not None else None
        short = child.rsplit(".", 1)[-1] if child is not None else "call"
        if (
            child is None
            or callee is None
            or use.position >= len(callee.params)
            or knows(short)
            or (child.startswith(TORCH_MODULES) and not child.startswith(TORCH_CONTAINERS))
        ):
            return short, (stack, use.result)
        return "", ((*stack, (child, use.method, use.result)), callee.params[use.position])

    def call_sites(self, root: str, path: Sequence[str]) -> Iterator[tuple[Stack, int]]:
        """(stack, result) for every call of the module at `path` reached from root.forward."""
        pending: list[tuple[Stack, int]] = [(((root, "forward", 0),), 0)]
        while pending:
            stack, depth = pending.pop()
            owner, name, _ = stack[-1]
            method = self.classes[owner].methods.get(name) if owner in self.classes else None
            self._step(1 + len(method.calls) if method else 1)
            for member, calls in (method.calls if method else {}).items():
                parts = member.split(".")
                if list(path[depth : depth + len(parts)]) != parts:
                    continue
                child = self.member_class(owner, member)
                self._step(len(calls))
                for called, result in calls:
                    if depth + len(parts) == len(path):
                        yield stack, result
                    elif child is not None and len(pending) < MAX_STACKS:
                        pending.append(((*stack, (child, called, result)), depth + len(parts)))


def _instances(classes: Mapping[str, _Class], root: str) -> Iterator[tuple[str, str]]:
    """(module path, class) of the submodules below the root, from the code's annotations:
    at most MAX_MODULES of them (a class may name itself as a member)."""
    pending, found = [("", root)], 0
    while pending:
        path, owner = pending.pop()
        known = classes.get(owner)
        for name, child in known.members.items() if known is not None else ():
            found += 1
            if found > MAX_MODULES:
                return
            pending.append((f"{path}{name}.", child))
            yield f"{path}{name}", child


def layer_followers(
    code: Mapping[str, str], root: str, layer_classes: Container[str]
) -> dict[str, ModuleConstants]:
    """The follower of every module of a class in `layer_classes` (the normalization
    classes), by module path, from the archive's code members; `root` is the class of the
    archive's root module."""
    classes = parse_classes(code)
    graph = _Graph(classes)
    found: dict[str, ModuleConstants] = {}
    try:
        for path, owner in _instances(classes, root):
            if owner not in layer_classes:
                continue
            starts = list(islice(graph.call_sites(root, path.split(".")), MAX_STACKS))
            follower = follower_of(starts, graph.uses) if starts else None
            if follower is not None:
                found[path] = ModuleConstants(None, follower=follower)
    except _OutOfSteps:
        return found  # the layers not reached keep an unknown follower
    return found
