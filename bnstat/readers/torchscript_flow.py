"""Symbolic evaluation of one TorchScript method: its values and who reads each of them.

TorchScript prints its code in a small subset of Python: assignments, calls of submodule
methods (`(relu).forward(x, )`), calls of ops (`torch.add(a, b)`), `if`s and `return`.
`evaluate` walks a parsed method once, gives every value an id, and records each
submodule call (which member, which method, the value receiving its result) and every
read of a value: by an op, producing a new value, or as an argument of a submodule call.
Nothing is run; constructs it does not know just produce values that nothing follows.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, field

_BINARY_OPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div"}


@dataclass(frozen=True)
class _Member:
    name: str  # dotted path below the module (`getattr(self.features, "0")` is `features.0`)


@dataclass(frozen=True)
class _Function:
    name: str  # a free function or op, e.g. `relu` for `torch.relu`


@dataclass(frozen=True)
class CallUse:
    """A value handed to a submodule's method as its `position`-th argument."""

    member: str
    method: str
    position: int
    result: int


@dataclass
class Method:
    """A method's parameters (after self), the submodule calls it makes (member: (method,
    value receiving the result)), the reads of each value and the values it returns."""

    params: list[int] = field(default_factory=list)
    calls: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    uses: dict[int, list[tuple[str, int | None] | CallUse]] = field(default_factory=dict)
    returns: set[int] = field(default_factory=set)


_SELF = object()
_Ref = int | _Member | _Function | object | None


class _Evaluator:
    """Symbolic evaluation of one method: value ids, submodule calls and who reads what."""

    def __init__(self) -> None:
        self.method = Method()
        self._env: dict[str, _Ref] = {}
        self._count = 0

    def run(self, function: ast.FunctionDef) -> Method:
        names = [argument.arg for argument in function.args.args]
        if names:
            self._env[names[0]] = _SELF
        for name in names[1:]:
            self._env[name] = value = self._new()
            self.method.params.append(value)
        self._block(function.body)
        return self.method

    def _new(self) -> int:
        self._count += 1
        return self._count

    def _read(self, value: _Ref, op: str, result: int | None) -> None:
        if isinstance(value, int):
            self.method.uses.setdefault(value, []).append((op, result))

    def _block(self, statements: Sequence[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value:
                value = self._expression(statement.value)
                targets = (
                    statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                )
                for target in targets:
                    self._bind(target, value)
            elif isinstance(statement, ast.Return) and statement.value is not None:
                value = self._expression(statement.value)
                if isinstance(value, int):
                    self.method.returns.add(value)
            elif isinstance(statement, ast.If | ast.While):
                self._expression(statement.test)
                self._block(statement.body)
                self._block(statement.orelse)
            elif isinstance(statement, ast.For):
                self._bind(statement.target, self._expression(statement.iter))
                self._block(statement.body)
                self._block(statement.orelse)
            elif isinstance(statement, ast.Expr):
                self._expression(statement.value)

    def _bind(self, target: ast.expr, value: _Ref) -> None:
        if isinstance(target, ast.Name):
            self._env[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                part = self._new()
                self._read(value, "unpack", part)
                self._bind(element, part)

    def _expression(self, node: ast.expr) -> _Ref:
        if isinstance(node, ast.Name):
            return self._env.get(node.id, _Function(node.id))
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Constant):
            return None
        result = self._new()
        op = _BINARY_OPS.get(type(node.op), "other") if isinstance(node, ast.BinOp) else "other"
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self._read(self._expression(child), op, result)
        return result

    def _attribute(self, node: ast.Attribute) -> _Ref:
        base = self._expression(node.value)
        if base is _SELF:
            return _Member(node.attr)
        if isinstance(base, int):
            result = self._new()
            self._read(base, node.attr, result)
            return result
        return _Function(node.attr)  # torch.relu, __torch__.torch.nn.functional.relu, ...

    def _call(self, node: ast.Call) -> _Ref:
        function, arguments = node.func, [*node.args, *(k.value for k in node.keywords)]
        if isinstance(function, ast.Attribute):
            base = self._expression(function.value)
            if isinstance(base, _Member) and function.attr.startswith("forward"):
                return self._module_call(base.name, function.attr, node.args)
            if isinstance(base, int):  # a method of a value: x.relu(), x.view(...)
                return self._op(function.attr, [base], arguments)
            callee: _Ref = _Member(function.attr) if base is _SELF else _Function(function.attr)
        else:
            callee = self._expression(function)
        member = self._getattr(callee, node)
        if member is not None:
            return member
        return self._op(callee.name if isinstance(callee, _Function) else "call", [], arguments)

    def _op(self, op: str, values: list[_Ref], arguments: Sequence[ast.expr]) -> int:
        result = self._new()
        for value in [*values, *(self._expression(argument) for argument in arguments)]:
            self._read(value, op, result)
        return result

    def _getattr(self, callee: _Ref, node: ast.Call) -> _Member | None:
        """`getattr(self, "0")` and `getattr(self.features, "0")`: a member by its name."""
        if callee != _Function("getattr") or len(node.args) != 2:
            return None
        base, name = self._expression(node.args[0]), node.args[1]
        if not isinstance(name, ast.Constant) or not isinstance(name.value, str):
            return None
        if base is _SELF:
            return _Member(name.value)
        return _Member(f"{base.name}.{name.value}") if isinstance(base, _Member) else None

    def _module_call(self, member: str, method: str, arguments: Sequence[ast.expr]) -> int:
        result = self._new()
        self.method.calls.setdefault(member, []).append((method, result))
        for position, argument in enumerate(arguments):
            value = self._expression(argument)
            if isinstance(value, int):
                use = CallUse(member, method, position, result)
                self.method.uses.setdefault(value, []).append(use)
        return result


def evaluate(function: ast.FunctionDef) -> Method:
    """The values, submodule calls and reads of one parsed method."""
    return _Evaluator().run(function)
