"""The scheduler on hand-made graphs: fronts, segments, cache lifetimes, pins and refusals."""

from __future__ import annotations

import pytest

from bnstat.execution.schedule import CachedValue, Closure, Op, Unsegmentable, fronts, plan

X = 0  # the model input


def chain() -> list[Op]:
    """x -> conv(0->1) -> bn a(1->2) -> conv(2->3) -> bn b(3->4) -> head(4->5)."""
    return [
        Op((), (X,), is_input=True),
        Op((X, 100), (1,)),  # 100: a weight, produced by nothing
        Op((1,), (2,), layer="a"),
        Op((2, 101), (3,)),
        Op((3,), (4,), layer="b"),
        Op((4,), (5,)),
    ]


def residual() -> list[Op]:
    """A block with a shortcut: a and the shortcut's bn s read x; b reads a; out = b + s."""
    return [
        Op((), (X,), is_input=True),
        Op((X,), (1,)),
        Op((1,), (2,), layer="a"),
        Op((2,), (3,)),
        Op((3,), (4,), layer="b"),
        Op((X,), (5,)),  # the shortcut's conv, after the main branch in graph order
        Op((5,), (6,), layer="s"),
        Op((4, 6), (7,)),
        Op((7,), (8,), layer="c"),
    ]


def test_a_chain_gets_one_front_per_layer_and_nothing_past_the_last_input():
    result = plan(chain())
    assert [dict(s.measure) for s in result.segments] == [{"a": (1,)}, {"b": (3,)}]
    first, second = result.segments
    assert first.ops == (0, 1) and first.inputs == () and first.outputs == (1,)
    assert second.ops == (2, 3) and second.inputs == (1,) and second.outputs == (3,)
    assert result.release == {1: (1, 3)}  # bn a reads 1 in the second segment
    assert fronts(chain()) == [["a"], ["b"]]


def test_a_shortcut_joins_its_sibling_front_and_the_block_input_is_cached_until_used():
    result = plan(residual())
    assert fronts(residual()) == [["a", "s"], ["b"], ["c"]]
    measured = [dict(s.measure) for s in result.segments]
    assert measured == [{"a": (1,), "s": (5,)}, {"b": (3,)}, {"c": (7,)}]
    assert result.segments[0].ops == (0, 1, 5)  # the shortcut conv runs in the first segment
    assert result.segments[1].ops == (2, 3, 6)  # both layers of the front are applied next
    assert result.segments[1].outputs == (3, 6)  # s's output waits for the addition
    assert result.segments[2].inputs == (3, 6) and result.segments[2].ops == (4, 7)


def test_weights_are_recomputed_where_needed_not_cached():
    ops = [
        Op((), (X,), is_input=True),
        Op((), (50,)),  # a constant op, e.g. get_attr
        Op((50,), (51,)),  # computed from constants only
        Op((X, 51), (1,)),
        Op((1,), (2,), layer="a"),
        Op((2, 51), (3,)),
        Op((3,), (4,), layer="b"),
    ]
    first, second = plan(ops).segments
    assert first.ops == (0, 1, 2, 3) and second.ops == (1, 2, 4, 5)
    assert 51 not in first.outputs and second.inputs == (1,)


def test_values_changed_in_place_keep_their_order_and_stay_in_memory():
    ops = [
        Op((), (X,), is_input=True),
        Op((X,), (1,)),
        Op((1,), (2,), layer="a"),
        Op((2, 1), (3,), mutates=(1,)),  # 1 += bn(1): changes the cached input of a in place
        Op((1,), (4,)),  # reads 1 after the change
        Op((4,), (5,), layer="b"),
    ]
    result = plan(ops)
    assert result.pinned == {1}
    assert result.segments[1].ops == (2, 3, 4)


def test_a_reader_before_an_in_place_change_runs_before_it():
    ops = [
        Op((), (X,), is_input=True),
        Op((X,), (1,)),
        Op((1,), (2,), layer="a"),
        Op((2,), (3,)),
        Op((3,), (4,), layer="b"),
        Op((4,), (5,)),
        Op((5,), (6,), layer="c"),
        Op((1, 6), (7,)),  # reads 1 before the change below, but needs c: a late stage
        Op((1, 4), (8,), mutates=(1,)),  # could run earlier, must not overtake the reader
        Op((7, 8), (9,)),
        Op((9,), (10,), layer="d"),
    ]
    result = plan(ops)
    stage_of = {op: s.index for s in result.segments for op in s.ops}
    assert stage_of[7] == stage_of[8] == 3
    assert result.segments[3].ops.index(7) < result.segments[3].ops.index(8)
    assert result.pinned == {1}


def test_a_layer_called_on_its_own_output_has_no_front():
    ops = [
        Op((), (X,), is_input=True),
        Op((X,), (1,), layer="a"),
        Op((1,), (2,)),
        Op((2,), (3,), layer="a"),
    ]
    with pytest.raises(Unsegmentable, match="layer a is called again"):
        plan(ops)
    assert fronts(ops) == [["a"]]


def test_a_layer_called_on_two_independent_inputs_is_measured_once_over_both():
    ops = [
        Op((), (X,), is_input=True),
        Op((X,), (1,)),
        Op((1,), (2,), layer="a"),
        Op((X,), (3,)),
        Op((3,), (4,), layer="a"),
        Op((2, 4), (5,)),
        Op((5,), (6,), layer="b"),
    ]
    result = plan(ops)
    assert dict(result.segments[0].measure) == {"a": (1, 3)}
    assert fronts(ops) == [["a"], ["b"]]


def test_a_graph_without_batchnorm_is_refused():
    with pytest.raises(Unsegmentable):
        plan([Op((), (X,), is_input=True), Op((X,), (1,))])


def test_a_deep_chain_is_scheduled_in_linear_passes():
    ops = [Op((), (X,), is_input=True)]
    for index in range(3000):
        value = 2 * index
        ops.append(Op((value,), (value + 1,)))
        ops.append(Op((value + 1,), (value + 2,), layer=f"bn{index}"))
    result = plan(ops)
    assert len(result.segments) == 3000
    assert all(len(s.measure) == 1 for s in result.segments)


def test_a_layer_that_normalises_a_constant_is_refused():
    ops = [Op((), (X,), is_input=True), Op((), (1,)), Op((1,), (2,), layer="a")]
    with pytest.raises(Unsegmentable, match="layer a normalises a value that no input reaches"):
        plan(ops)


def test_cached_values_say_where_they_are_read_and_how_to_remake_them():
    cached = plan(residual()).cached
    assert set(cached) == {1, 3, 5, 6}
    assert cached[1] == CachedValue(0, (1,), None)  # remade only from the model input
    assert cached[3] == CachedValue(1, (2,), Closure((2, 3), (1,)))  # bn a, then the op after
    assert cached[6] == CachedValue(1, (2,), Closure((6,), (5,)))  # bn s from its input


def test_a_recomputed_value_is_remade_where_read_from_what_stays_cached():
    result = plan(residual(), recompute=frozenset({3}))
    last = result.segments[2]
    assert last.ops == (2, 3, 4, 7) and set(last.inputs) == {1, 6}
    assert 3 in result.segments[1].outputs  # still measured where it is made (front of b)
    assert result.recomputed == {3}
    assert 3 not in {v for values in result.release.values() for v in values}
    assert 1 in result.release[2]  # kept until the segment that remakes 3 from it


def test_values_that_cannot_be_remade_are_refused():
    ops = [
        Op((), (X,), is_input=True),
        Op((X,), (1,)),
        Op((1,), (2,), layer="a"),
        Op((2,), (3,)),
        Op((3,), (4,), layer="b"),
        Op((4, 1), (5,), mutates=(1,)),  # changes the cached value 1 in place
        Op((5,), (6,), layer="c"),
    ]
    result = plan(ops)
    assert 1 in result.pinned and result.cached[1].closure is None
    with pytest.raises(ValueError, match="cannot be recomputed"):
        plan(ops, recompute=frozenset({1}))
