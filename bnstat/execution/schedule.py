"""Cut a model's graph at its BatchNorm fronts, so that every part of it runs once.

The exact statistics of a BatchNorm layer are the moments of its input when every layer
upstream of it already normalises with its own new statistics. A layer's *front* is the
cut after which all of its inputs are known with final upstream statistics; its
statistics are measured at that cut and only then is the layer applied. Layers whose
inputs become final at the same cut (a downsample branch and its sibling, say) share a
front.

The scheduler sees a model as a list of `Op`s in topological order, whatever runs it
(torch.fx, TorchScript, ONNX). Every op gets a *stage*: the earliest segment it can run
in. A BatchNorm call runs one stage after its layer's front; any other op runs in the
stage of its latest input. Values that one stage produces and a later one reads (the
residual input of a block, say) are what the sweep caches between segments. Ops that
read no data (weights, constants) belong to no stage: every segment that needs them
recomputes them. Ops that change a value in place keep their order against every other
reader of that value, and a value changed after it was cached is pinned in memory,
where the change is seen by every later reader, as it would be in one forward pass.

A cached value can instead be *recomputed*: every later segment that reads it runs again
the ops that made it, from values that stay cached (`plan(ops, recompute=...)`). That
trades compute for memory where memory or disk is short (`execution.planning` decides).
A value can be recomputed when the ops that make it reach back to cached values only, not
to the model input, and change nothing in place outside themselves; `Plan.cached` says
which values can, from what, and at what cost in ops.

A layer that is called again on values that depend on its own output has no front (its
statistics would have to be known before they can be measured): such a graph is refused
with `Unsegmentable`, and the caller falls back to sweeping with a probe per front.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass


class Unsegmentable(Exception):
    """The graph cannot be cut at BatchNorm fronts; the message says why."""


@dataclass(frozen=True)
class Op:
    """One node of a model's graph, as the scheduler sees it.

    Values are integers chosen by the caller. A value that no op produces is a constant
    (a weight, `self`). `layer` marks a BatchNorm call, whose data input is `inputs[0]`.
    """

    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    layer: str | None = None
    mutates: tuple[int, ...] = ()  # inputs it changes in place
    is_input: bool = False  # a model input: its outputs come from the data


@dataclass(frozen=True)
class SegmentSpec:
    """What one segment runs, reads from the cache, and leaves in it."""

    index: int
    ops: tuple[int, ...]  # in graph order, with the constant ops they need
    inputs: tuple[int, ...]  # cached values it reads (segment 0 reads the model input)
    outputs: tuple[int, ...]  # values it caches for later segments or for measuring
    measure: dict[str, tuple[int, ...]]  # layers whose front is this cut: their call inputs


@dataclass(frozen=True)
class Closure:
    """What recomputing a value takes: ops (with those of the stage that made it), and the
    cached values they read."""

    ops: tuple[int, ...]
    inputs: tuple[int, ...]


@dataclass(frozen=True)
class CachedValue:
    """A value one segment leaves for later ones: where it is made and read, and how it
    could be recomputed instead (None: it cannot)."""

    stage: int
    reads: tuple[int, ...]  # the later segments that read it
    closure: Closure | None


@dataclass(frozen=True)
class Plan:
    segments: tuple[SegmentSpec, ...]
    release: dict[int, tuple[int, ...]]  # after segment i: cached values no longer needed
    pinned: frozenset[int]  # cached values changed in place later: never spilled to disk
    cached: dict[int, CachedValue]  # every value kept between segments, as planned
    recomputed: frozenset[int] = frozenset()  # values recomputed where read, never cached
    ops: tuple[Op, ...] = ()  # the graph it was made from


def replan(plan_: Plan, recompute: frozenset[int]) -> Plan:
    """The same plan with the values `recompute` remade where read."""
    return plan(plan_.ops, recompute)


class _Analysis:
    """Producers, readers, data dependence and in-place ordering of a list of ops."""

    def __init__(self, ops: Sequence[Op]) -> None:
        self.ops = ops
        self.producer = {value: index for index, op in enumerate(ops) for value in op.outputs}
        self.readers: dict[int, list[int]] = defaultdict(list)
        for index, op in enumerate(ops):
            for value in dict.fromkeys(op.inputs):
                self.readers[value].append(index)
        self.data = self._data_ops()
        self.before: dict[int, set[int]] = defaultdict(set)  # ops that must run earlier
        self.depends: dict[int, set[int]] = defaultdict(set)  # ... and whose effect it reads
        for index, op in enumerate(ops):
            for value in op.mutates:
                for reader in self.readers[value]:
                    if reader < index:
                        self.before[index].add(reader)
                    elif reader > index:
                        self.depends[reader].add(index)
        self.calls: dict[str, list[int]] = defaultdict(list)
        for index, op in enumerate(ops):
            if op.layer is not None:
                self.calls[op.layer].append(index)

    def _data_ops(self) -> set[int]:
        data_values: set[int] = set()
        data: set[int] = set()
        for index, op in enumerate(self.ops):
            if op.is_input or op.layer is not None or data_values.intersection(op.inputs):
                data.add(index)
                data_values.update(op.outputs)
        return data

    def producers(self, index: int) -> list[int]:
        """The ops that produce the inputs of op `index`."""
        return [self.producer[v] for v in self.ops[index].inputs if v in self.producer]

    def upstream(self, index: int) -> list[int]:
        """Data ops whose results `index` needs: producers of its inputs, in-place writers."""
        return [i for i in (*self.producers(index), *self.depends[index]) if i in self.data]

    def call_input(self, index: int) -> int:
        return self.ops[index].inputs[0]


def _needed(analysis: _Analysis) -> set[int]:
    """Data ops on which some BatchNorm call's input depends (the rest never has to run)."""
    stack = [
        analysis.producer[analysis.call_input(i)]
        for calls in analysis.calls.values()
        for i in calls
        if analysis.call_input(i) in analysis.producer
    ]
    needed: set[int] = set()
    while stack:
        index = stack.pop()
        if index in needed or index not in analysis.data:
            continue
        needed.add(index)
        stack.extend(analysis.upstream(index))
    return needed


def _stages(analysis: _Analysis, ops: set[int]) -> tuple[dict[int, int], dict[str, int]]:
    """Stage of every op in `ops` and front of every layer, by relaxation to a fixed point.

    In graph order one round settles everything but the calls of a layer whose later
    calls read values computed after its first; a cycle makes stages grow past any
    possible front, which is how it is detected.
    """
    stage = dict.fromkeys(ops, 0)
    order = sorted(ops)
    limit = len(analysis.calls)  # fronts are numbered from 0: one per layer at most

    def front(layer: str) -> int:
        producers = (analysis.producer.get(analysis.call_input(i)) for i in analysis.calls[layer])
        found = max((stage.get(p, 0) for p in producers if p is not None), default=0)
        if found >= limit:
            raise Unsegmentable(
                f"layer {layer} is called again on values that depend on its own output"
            )
        return found

    changed = True
    while changed:
        changed = False
        for index in order:
            layer = analysis.ops[index].layer
            earlier = (*analysis.upstream(index), *analysis.before[index])
            new = max((stage.get(i, 0) for i in earlier), default=0)
            if layer is not None:
                new = max(new, front(layer) + 1)
            if new != stage[index]:
                stage[index], changed = new, True
    return stage, {layer: front(layer) for layer in analysis.calls}


def layer_order(ops: Sequence[Op]) -> list[str]:
    """Layers in the order of their first call."""
    return list(dict.fromkeys(op.layer for op in ops if op.layer is not None))


def fronts(ops: Sequence[Op]) -> list[list[str]]:
    """Layers grouped by front, in order; one layer a front where the graph has no fronts."""
    analysis = _Analysis(ops)
    try:
        _, front = _stages(analysis, _needed(analysis))
    except Unsegmentable:
        return [[layer] for layer in layer_order(ops)]
    grouped: dict[int, list[str]] = defaultdict(list)
    for layer in layer_order(ops):
        grouped[front[layer]].append(layer)
    return [grouped[key] for key in sorted(grouped)]


def plan(ops: Sequence[Op], recompute: frozenset[int] = frozenset()) -> Plan:
    """Segments, cache lifetimes and pinned values for a one-pass sweep of `ops`; the
    values in `recompute` (which `Plan.cached` says can be) are recomputed where read."""
    analysis = _Analysis(ops)
    if not analysis.calls:
        raise Unsegmentable("the graph has no BatchNorm calls")
    for layer, calls in analysis.calls.items():
        if any(analysis.producer.get(analysis.call_input(i)) not in analysis.data for i in calls):
            raise Unsegmentable(f"layer {layer} normalises a value that no input reaches")
    needed = _needed(analysis)
    stage, front = _stages(analysis, needed)
    readers: dict[int, set[int]] = defaultdict(set)  # cached value -> stages that read it
    for index in needed:
        for value in analysis.ops[index].inputs:
            if analysis.producer.get(value) in analysis.data:
                readers[value].add(stage[index])
    measured: dict[int, dict[str, tuple[int, ...]]] = defaultdict(dict)  # front -> layers
    for layer in layer_order(ops):
        values = tuple(dict.fromkeys(analysis.call_input(i) for i in analysis.calls[layer]))
        measured[front[layer]][layer] = values
        for value in values:
            readers[value].add(front[layer])
    by_stage: dict[int, list[int]] = defaultdict(list)
    for index in sorted(needed):
        by_stage[stage[index]].append(index)
    pinned = {
        value
        for index in needed
        for value in analysis.ops[index].mutates
        if analysis.producer.get(value) in needed and stage[analysis.producer[value]] < stage[index]
    }
    crossing = {
        value
        for value, stages in readers.items()
        if analysis.producer.get(value) in needed
        and any(s > stage[analysis.producer[value]] for s in stages)
    }
    cached = {
        value: CachedValue(
            stage[analysis.producer[value]],
            tuple(sorted(s for s in readers[value] if s > stage[analysis.producer[value]])),
            None if value in pinned else _closure(analysis, value, crossing),
        )
        for value in sorted(crossing)
    }
    refused = [value for value in recompute if value not in cached or not cached[value].closure]
    if refused:
        raise ValueError(f"values {sorted(refused)} cannot be recomputed")
    segments = tuple(
        _segment(analysis, by_stage[s], readers, s, measured[s], cached, recompute)
        for s in range(max(front.values()) + 1)
    )
    last: dict[int, int] = {}  # the last segment that reads or makes each value
    for spec in segments:
        for value in (*spec.inputs, *spec.outputs):
            last[value] = spec.index
    released: dict[int, list[int]] = defaultdict(list)
    for value, stage_index in sorted(last.items()):
        if value not in recompute:
            released[stage_index].append(value)
    return Plan(
        segments,
        {s: tuple(v) for s, v in sorted(released.items())},
        frozenset(pinned),
        cached,
        frozenset(recompute),
        tuple(ops),
    )


def _closure(analysis: _Analysis, value: int, crossing: set[int]) -> Closure | None:
    """The ops that remake `value` from other cached values, if they can (see the module
    docstring): not from the model input, changing nothing in place but their own."""
    ops: set[int] = set()
    inputs: set[int] = set()
    stack = [analysis.producer[value]]
    while stack:
        index = stack.pop()
        if index in ops:
            continue
        op = analysis.ops[index]
        if op.is_input:
            return None
        ops.add(index)
        for read in op.inputs:
            producer = analysis.producer.get(read)
            if producer is None or producer not in analysis.data:
                continue
            if read in crossing:
                inputs.add(read)
            else:
                stack.append(producer)
        stack.extend(w for w in analysis.depends[index] if w in analysis.data)
    made = {out for index in ops for out in analysis.ops[index].outputs}
    if any(m not in made for index in ops for m in analysis.ops[index].mutates):
        return None
    return Closure(tuple(sorted(ops)), tuple(sorted(inputs)))


def _segment(
    analysis: _Analysis,
    own: list[int],
    readers: dict[int, set[int]],
    index: int,
    measure: dict[str, tuple[int, ...]],
    cached: dict[int, CachedValue],
    recompute: frozenset[int],
) -> SegmentSpec:
    produced = [value for i in own for value in analysis.ops[i].outputs]
    measured = {value for values in measure.values() for value in values}
    read = [
        value
        for i in own
        for value in analysis.ops[i].inputs
        if value not in produced and analysis.producer.get(value) in analysis.data
    ]
    ops = set(own)
    inputs = list(dict.fromkeys(read))
    while remade := [value for value in inputs if value in recompute]:
        for value in remade:
            closure = cached[value].closure
            assert closure is not None
            ops |= set(closure.ops)
            inputs = [v for v in inputs if v != value] + [
                v for v in closure.inputs if v not in inputs
            ]
    kept = [v for v in produced if v in measured or any(s > index for s in readers[v])]
    outputs = [v for v in kept if v in measured or v not in recompute]
    return SegmentSpec(
        index=index,
        ops=tuple(sorted({*ops, *_constants(analysis, list(ops))})),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        measure=measure,
    )


def _constants(analysis: _Analysis, own: list[int]) -> set[int]:
    """Ops that read no data and that `own` needs, directly or through other constants."""
    found: set[int] = set()
    stack = [
        analysis.producer[v] for i in own for v in analysis.ops[i].inputs if v in analysis.producer
    ]
    while stack:
        index = stack.pop()
        if index in analysis.data or index in found:
            continue
        found.add(index)
        stack.extend(
            analysis.producer[v] for v in analysis.ops[index].inputs if v in analysis.producer
        )
    return found
