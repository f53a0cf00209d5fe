"""Fuse a segment's operations into one Python function that processes a whole batch.

Calling each step through a queue, or even through a generic loop over a list of steps, costs
more than the user's own functions in a typical pipeline. So a segment is compiled into a single
loop, generated as source text, that calls the user functions directly::

    def segment(values, keys, o0):
        a0 = o0.append
        it = iter(values)
        for x0 in it:
            try:
                x0 = f0(x0)          # decoder
                if x0 is None: continue
                x0 = f1(x0)          # multiply
                if x0 is None: continue
                y = e0(x0)           # the sink's encoder
                if y is not None: a0(y)
            except Exception as exc:
                fail(exc, locals())

Errors cost nothing until they happen (Python 3.11 exceptions are zero-cost when not raised).
When one does, the line it was raised on says which operation failed (``lines``), the loop
variable of that depth holds the operation's input, and the loop goes on with the next message;
``fail`` turns it into a dead letter. ``source`` keeps the generated text for debugging.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wallaroo.decorators import normalize_key
from wallaroo.engine.state import StateStore
from wallaroo.errors import UserCodeError
from wallaroo.plan.physical import Discard, Exchange, MapOp, Op, StateOp, ToSinks, ToWindow

__all__ = ["FusedSegment", "LineInfo", "fuse"]


@dataclass(frozen=True, slots=True)
class LineInfo:
    """What a generated line does: ``kind`` of work for operation ``op`` at loop ``depth``.

    Kinds: ``call`` (the user function), ``multi`` (checking a list result), ``persist``
    (unpacking the seed generation's ``(output, persist)``), ``state`` (creating a key's state),
    ``encode`` (sink ``sink``'s encoder), ``key`` (the key function), ``key-type`` (its result).
    """

    op: int
    kind: str
    depth: int
    sink: int = -1


@dataclass(frozen=True, slots=True)
class FusedSegment:
    """A segment compiled by :func:`fuse`.

    Attributes:
        fn: the generated batch function, called ``fn(values, keys, times, *outputs)`` (see
            :func:`fuse`).
        lines: what each line of the generated source does, by line number (1-based); names
            the failing operation of a dead letter.
        source: the generated source text, for debugging.
        outputs: how many output lists ``fn`` takes after ``times``.
    """

    fn: Callable[..., None]
    lines: Mapping[int, LineInfo]
    source: str
    outputs: int


def _check_multi(result: Any) -> list[Any]:
    if isinstance(result, list | tuple):
        return list(result)
    raise UserCodeError(
        f"a *_multi computation must return a list (or None), got {type(result).__name__}"
    )


class _Emitter:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.info: dict[int, LineInfo] = {}

    def emit(self, indent: int, text: str, info: LineInfo | None = None) -> None:
        self.lines.append("    " * indent + text)
        if info is not None:
            self.info[len(self.lines)] = info  # line numbers are 1-based

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class _Builder:
    def __init__(self, ops: Sequence[Op], target: Any, keyed: bool, timed: bool) -> None:
        self.ops = ops
        self.target = target
        self.keyed = keyed
        self.timed = timed
        self.out = _Emitter()
        self.end_depth = 0

    def body(self, index: int, depth: int, indent: int) -> None:
        """Emit operation ``index`` (then the rest) on value ``x{depth}``."""
        e = self.out
        if index == len(self.ops):
            self.emit_target(depth, indent)
            return
        op = self.ops[index]
        x = f"x{depth}"
        if isinstance(op, StateOp):
            e.emit(indent, f"s = g{index}(k)")
            e.emit(indent, f"if s is None: s = n{index}(k)", LineInfo(index, "state", depth))
            call = f"f{index}({x}, s)"
        else:
            call = f"f{index}({x})"
        multi = isinstance(op, MapOp | StateOp) and op.multi
        persist = isinstance(op, StateOp) and op.returns_persist
        result = f"r{depth}" if multi else x
        if persist:
            e.emit(indent, f"r = {call}", LineInfo(index, "call", depth))
            e.emit(indent, f"{result}, _ = r", LineInfo(index, "persist", depth))
        else:
            e.emit(indent, f"{result} = {call}", LineInfo(index, "call", depth))
        e.emit(indent, f"if {result} is None: continue")
        if not multi:
            self.body(index + 1, depth, indent)
            return
        e.emit(
            indent,
            f"if {result}.__class__ is not list: {result} = chk({result})",
            LineInfo(index, "multi", depth),
        )
        inner = depth + 1
        e.emit(indent, f"for x{inner} in {result}:")
        e.emit(indent + 1, "try:")
        e.emit(indent + 2, f"if x{inner} is None: continue")
        self.body(index + 1, inner, indent + 2)
        e.emit(indent + 1, "except Exception as exc:")
        e.emit(indent + 2, "fail(exc, locals())")

    def emit_target(self, depth: int, indent: int) -> None:
        e, t, x = self.out, self.target, f"x{depth}"
        end = len(self.ops)
        if isinstance(t, ToSinks):
            for j in range(len(t.sinks)):
                e.emit(indent, f"y = e{j}({x})", LineInfo(end, "encode", depth, j))
                e.emit(indent, f"if y is not None: a{j}(y)")
        elif isinstance(t, Exchange) and t.key_fn is not None:
            e.emit(indent, f"kk = kf({x})", LineInfo(end, "key", depth))
            e.emit(
                indent,
                "if kk.__class__ is not str: kk = norm(kk)",
                LineInfo(end, "key-type", depth),
            )
            e.emit(indent, "ak(kk)")
            e.emit(indent, f"av({x})")
        elif isinstance(t, ToWindow) or (isinstance(t, Exchange) and t.source_key is not None):
            e.emit(indent, "ak(k)")
            e.emit(indent, f"av({x})")
        elif isinstance(t, Exchange):
            e.emit(indent, f"av({x})")
        else:
            e.emit(indent, "pass")
        if self.timed and isinstance(t, Exchange | ToWindow):
            e.emit(indent, "at(t)")

    def outputs(self) -> list[str]:
        t = self.target
        if isinstance(t, ToSinks):
            return [f"o{j}" for j in range(len(t.sinks))]
        timed = ["ot"] if self.timed else []
        if isinstance(t, Exchange):
            return (["ov"] if t.const_key is not None else ["ok", "ov"]) + timed
        if isinstance(t, ToWindow):
            return ["ok", "ov", *timed]
        return []

    def build(self) -> str:
        e = self.out
        outs = self.outputs()
        e.emit(0, f"def segment(values, keys, times{''.join(', ' + o for o in outs)}):")
        for o in outs:
            e.emit(1, f"a{o[1:]} = {o}.append")
        uses_key = self.keyed or (
            isinstance(self.target, Exchange) and self.target.source_key is not None
        )
        # zip's last iterator is a list iterator: the failure handler reads the position there
        if uses_key:
            e.emit(1, "it = zip(keys, values, times)" if self.timed else "it = zip(keys, values)")
            e.emit(1, "for k, x0, t in it:" if self.timed else "for k, x0 in it:")
        elif self.timed:
            e.emit(1, "it = zip(values, times)")
            e.emit(1, "for x0, t in it:")
        else:
            e.emit(1, "it = iter(values)")
            e.emit(1, "for x0 in it:")
        e.emit(2, "try:")
        if uses_key and not self.keyed:
            e.emit(3, "if k is None: k = DK")
        self.body(0, 0, 3)
        e.emit(2, "except Exception as exc:")
        e.emit(3, "fail(exc, locals())")
        return e.text()


def fuse(
    ops: Sequence[Op],
    target: ToSinks | Exchange | Discard | ToWindow,
    *,
    keyed: bool,
    timed: bool = False,
    states: Mapping[str, StateStore],
    encoders: Sequence[Callable[[Any], Any]],
    fail: Callable[[BaseException, dict[str, Any]], None],
    filename: str = "<wallaroo segment>",
) -> FusedSegment:
    """Generate the batch function of one segment.

    The function is called ``segment(values, keys, times, *outputs)``: ``values`` is the batch,
    ``keys`` the parallel list of keys (keyed segments, and source segments whose target is a
    source-key exchange; else ignored), ``times`` the parallel event times when ``timed`` (else
    ignored), ``outputs`` the lists it appends to (one per sink for ``ToSinks``; ``keys, values``
    for an exchange by key or a window; ``values`` for a constant key; plus ``times`` when
    ``timed``).
    """
    builder = _Builder(ops, target, keyed, timed)
    source = builder.build()
    namespace: dict[str, Any] = {"chk": _check_multi, "norm": normalize_key, "fail": fail}
    for i, op in enumerate(ops):
        namespace[f"f{i}"] = op.fn
        if isinstance(op, StateOp):
            store = states[op.state]
            namespace[f"g{i}"] = store.states.get
            namespace[f"n{i}"] = store.create
    for j, encode in enumerate(encoders):
        namespace[f"e{j}"] = encode
    if isinstance(target, Exchange):
        namespace["kf"] = target.key_fn
        namespace["DK"] = target.source_key
    code = compile(source, filename, "exec")
    exec(code, namespace)  # noqa: S102 - the text is generated above from fixed templates
    return FusedSegment(namespace["segment"], builder.out.info, source, len(builder.outputs()))
