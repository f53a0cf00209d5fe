"""The decorators of both API generations and the objects they return.

A decorator turns a plain function into a small frozen object that remembers the function, the
name the user gave it and which contract it follows. The engine never inspects return values to
guess a contract: everything is decided here, when the decorator runs (``decisions.md``).

Decorated objects stay callable (they call the function), and pickle by reference to the module
attribute that holds them, so a plan can cross a process boundary.

:func:`to_bytes` (strict) and :func:`as_bytes` (lenient) are the two ways a result becomes bytes,
for the engine, the worker and the connectors alike.
"""

from __future__ import annotations

import importlib
import inspect
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from wallaroo.errors import WallarooParameterError

__all__ = [
    "Computation",
    "Decoder",
    "Encoder",
    "KeyExtractor",
    "StateComputation",
    "as_bytes",
    "by_value_reduction",
    "computation",
    "computation_multi",
    "decoder",
    "encoder",
    "key_extractor",
    "partition",
    "state_computation",
    "state_computation_multi",
    "to_bytes",
]

Fn = Callable[..., Any]


def _describe(fn: Fn) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"'{name}'"


def check_arity(fn: Fn, expected: int, role: str, args_doc: str) -> None:
    """Raise WallarooParameterError unless ``fn`` can be called with ``expected`` arguments."""
    if not callable(fn):
        raise WallarooParameterError(f"{role} must decorate a function, got {type(fn).__name__}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    required = positional = 0
    star = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            star = True
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
            required += p.default is p.empty
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            raise WallarooParameterError(
                f"{role} {_describe(fn)} has a required keyword-only parameter '{p.name}'; "
                "wallaroo passes arguments positionally, so give it a default"
            )
    if required <= expected and (positional >= expected or star):
        return
    plural = "argument" if expected == 1 else "arguments"
    raise WallarooParameterError(
        f"{role} {_describe(fn)} must take exactly {expected} {plural} ({args_doc}), "
        f"but it takes {positional}; change its signature to "
        f"def {getattr(fn, '__name__', 'f')}({args_doc})"
    )


def by_value_reduction(obj: Any) -> tuple[Any, ...] | None:
    """For a decorated object defined in ``__main__``, the reduction that rebuilds it from its
    fields (see ``_Decorated.by_value``); None for anything else (pickled as usual)."""
    if isinstance(obj, _Decorated) and getattr(obj.fn, "__module__", None) == "__main__":
        return obj.by_value()
    return None


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class _Decorated:
    """Mixin: pickle a decorated object by the module attribute that holds it."""

    __slots__ = ()
    fn: Fn

    def by_value(self) -> tuple[Any, ...]:
        """The reduction that rebuilds this object from its fields, its function included,
        for a pickler that carries functions by value (Ray's cloudpickle) into a process
        where the defining module cannot be imported (``__main__``)."""
        return (type(self), tuple(getattr(self, f) for f in self.__dataclass_fields__))  # type: ignore[attr-defined]

    def __reduce__(self) -> str | tuple[Any, ...]:
        module = getattr(self.fn, "__module__", None)
        qualname = getattr(self.fn, "__qualname__", None)
        if module and qualname and "<locals>" not in qualname:
            try:
                if _lookup(module, qualname) is self:
                    return (_lookup, (module, qualname))
            except (ImportError, AttributeError):
                pass
        return self.by_value()

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


@dataclass(frozen=True, slots=True, eq=False)
class Computation(_Decorated):
    """A stateless computation: ``fn(data)`` returns one output, or a list when ``multi``."""

    fn: Fn
    comp_name: str
    multi: bool

    def name(self) -> str:
        """The computation's name (the original API's method)."""
        return self.comp_name


@dataclass(frozen=True, slots=True, eq=False)
class StateComputation(_Decorated):
    """A computation over per-key state: ``fn(data, state)``.

    ``returns_persist`` is True for the seed's generation, whose functions return a pair
    ``(output, persist)``; False for the later one (``state_computation(name, state)``), whose
    functions return just the output. ``state_factory`` is the later generation's state class.
    """

    fn: Fn
    comp_name: str
    multi: bool
    returns_persist: bool
    state_factory: Callable[[], Any] | None

    def name(self) -> str:
        """The computation's name (the original API's method)."""
        return self.comp_name

    def initial_state(self) -> Any:
        """A new state object from the state class.

        Raises:
            WallarooParameterError: the computation has no state class.
        """
        if self.state_factory is None:
            raise WallarooParameterError(
                f"state computation '{self.comp_name}' has no state class; pass one to "
                "to_stateful/to_state_partition, or use state_computation(name, state=MyState)"
            )
        return make_state(self.state_factory)


@dataclass(frozen=True, slots=True, eq=False)
class KeyExtractor(_Decorated):
    """Returns the routing key of a message (``key_extractor`` or the seed's ``partition``)."""

    fn: Fn

    def extract_key(self, data: Any) -> str:
        """The key of ``data``, normalised to a str.

        Raises:
            TypeError: the function returned something that cannot be a key.
        """
        return normalize_key(self.fn(data))


@dataclass(frozen=True, slots=True, eq=False)
class Decoder(_Decorated):
    """Turns a payload into a message; frames TCP input with a length header.

    ``kind`` tells where it belongs: ``"framed"`` (``@wallaroo.decoder``), ``"stream"`` or
    ``"octet"`` (the connector decorators of ``wallaroo.experimental``). On the connector protocol
    all three receive exactly the payload bytes.
    """

    fn: Fn
    header_len: int
    length_fmt: str
    kind: Literal["framed", "stream", "octet"]

    def header_length(self) -> int:
        """The length in bytes of a TCP frame's header."""
        return self.header_len

    def payload_length(self, header: bytes) -> int:
        """The payload length a frame header gives (unpacked with ``length_fmt``)."""
        return int(struct.unpack(self.length_fmt, header)[0])

    def decode(self, payload: bytes) -> Any:
        """The message the decorated function makes of ``payload``."""
        return self.fn(payload)

    def decoder(self) -> Fn:
        """The decorated function."""
        return self.fn


@dataclass(frozen=True, slots=True, eq=False)
class Encoder(_Decorated):
    """Turns an output into bytes (``str`` is encoded as UTF-8; ``None`` writes nothing)."""

    fn: Fn
    kind: Literal["plain", "stream", "octet"]

    def encode(self, data: Any) -> bytes | None:
        """The bytes of ``data``: the decorated function's result, ``str`` as UTF-8; None to write
        nothing.
        """
        return to_bytes(self.fn(data))

    def encoder(self) -> Fn:
        """The decorated function."""
        return self.fn


def to_bytes(
    value: Any,
    what: str = "an encoder's result",
    error: Callable[[str], Exception] = TypeError,
) -> bytes | None:
    """``value`` as bytes, strictly: for what user code hands on to be sent (an encoder's
    result, a message key).

    ``bytes`` pass as they are, a ``str`` becomes UTF-8, other bytes-like objects (bytearray,
    memoryview, a bytes subclass) become bytes, None stays None (nothing to write; no key).
    Anything else is a mistake of the code that made it: it is refused, not guessed at (the
    engine makes it a dead letter). :func:`as_bytes` is the lenient policy.

    Raises:
        TypeError: ``value`` is none of these (``error`` instead, when given); the message
            starts with ``what``.
    """
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise error(f"{what} must be bytes, str or None, got {type(value).__name__}")


def as_bytes(value: Any) -> bytes:
    """``value`` as bytes, leniently: for values a connector program writes out (a UDP
    datagram, an S3 object, a Kafka or Kinesis record).

    Bytes-like values become bytes, a ``str`` becomes UTF-8, and anything else (None too) is
    written as ``str(value)`` in UTF-8: a sink decoder's result is data for an outside system,
    where ``32.0`` meaning ``b"32.0"`` is what its user expects. Never raises for a value whose
    ``str()`` works. Use :func:`to_bytes` where a wrong type is a mistake to report.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return value if type(value) is bytes else bytes(value)
    return (value if isinstance(value, str) else str(value)).encode("utf-8")


def normalize_key(key: Any) -> str:
    """Keys are strings; an ``int`` becomes ``chr(int)`` as in the original, bytes are UTF-8."""
    if type(key) is str:
        return key
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bool):
        raise TypeError("a key must be a str (or an int code point), got bool")
    if isinstance(key, int):
        return chr(key)
    if isinstance(key, bytes | bytearray):
        return bytes(key).decode("utf-8", "surrogateescape")
    raise TypeError(f"a key must be a str, got {type(key).__name__}")


def make_state(factory: Any) -> Any:
    """Create one state object: call the class (or builder) with no arguments."""
    if callable(factory):
        return factory()
    build = getattr(factory, "build", None)
    if callable(build):
        return build()
    raise WallarooParameterError(
        f"state {factory!r} is neither a class nor a builder with build(); pass the state class"
    )


def _named(name: Any, role: str) -> str:
    if not isinstance(name, str) or not name:
        raise WallarooParameterError(
            f'@wallaroo.{role} needs a name: write @wallaroo.{role}(name="my step")'
        )
    return name


def computation(name: str) -> Callable[[Fn], Computation]:
    """Decorate ``fn(data) -> output | None``; ``None`` filters the message out."""
    comp_name = _named(name, "computation")

    def wrap(fn: Fn) -> Computation:
        check_arity(fn, 1, "computation", "data")
        return Computation(fn, comp_name, multi=False)

    return wrap


def computation_multi(name: str) -> Callable[[Fn], Computation]:
    """Decorate ``fn(data) -> list | None``; each non-``None`` element becomes a message."""
    comp_name = _named(name, "computation_multi")

    def wrap(fn: Fn) -> Computation:
        check_arity(fn, 1, "computation_multi", "data")
        return Computation(fn, comp_name, multi=True)

    return wrap


def _state_decorator(
    name: str, state: Any, multi: bool, role: str
) -> Callable[[Fn], StateComputation]:
    comp_name = _named(name, role)
    if state is not None and not callable(state) and not callable(getattr(state, "build", None)):
        raise WallarooParameterError(
            f"@wallaroo.{role}(name={name!r}, state=...) needs the state class itself "
            f"(called with no arguments for every key), got {state!r}"
        )

    def wrap(fn: Fn) -> StateComputation:
        check_arity(fn, 2, role, "data, state")
        return StateComputation(
            fn, comp_name, multi=multi, returns_persist=state is None, state_factory=state
        )

    return wrap


def state_computation(name: str, state: Any = None) -> Callable[[Fn], StateComputation]:
    """Decorate ``fn(data, state)``.

    Without ``state`` (the seed's generation) the function returns ``(output, persist)``; with
    ``state=StateClass`` (the later generation) it returns just the output.
    """
    return _state_decorator(name, state, False, "state_computation")


def state_computation_multi(name: str, state: Any = None) -> Callable[[Fn], StateComputation]:
    """Like :func:`state_computation`, with a list of outputs (``None`` elements dropped)."""
    return _state_decorator(name, state, True, "state_computation_multi")


def key_extractor(fn: Fn) -> KeyExtractor:
    """Decorate ``fn(data) -> key``; the key routes the message to its state from here on."""
    check_arity(fn, 1, "key_extractor", "data")
    return KeyExtractor(fn)


def partition(fn: Fn) -> KeyExtractor:
    """The seed generation's key function for ``to_state_partition``: ``fn(data) -> key``."""
    check_arity(fn, 1, "partition", "data")
    return KeyExtractor(fn)


def decoder(header_length: int = 4, length_fmt: str = ">I") -> Callable[[Fn], Decoder]:
    """Decorate ``fn(payload: bytes) -> message | None`` for a framed TCP source.

    Every frame on the wire is a ``header_length``-byte header, unpacked with the ``struct``
    format ``length_fmt`` into the payload length, then the payload.
    """
    if not isinstance(header_length, int) or not 1 <= header_length <= 8:
        raise WallarooParameterError(
            f"decoder header_length must be an int from 1 to 8, got {header_length!r}"
        )
    try:
        size = struct.calcsize(length_fmt)
    except (struct.error, TypeError) as exc:
        raise WallarooParameterError(
            f"decoder length_fmt {length_fmt!r} is not a struct format (e.g. '>I')"
        ) from exc
    if size != header_length:
        raise WallarooParameterError(
            f"decoder length_fmt {length_fmt!r} reads {size} bytes but header_length is "
            f"{header_length}; make them agree (e.g. header_length=4, length_fmt='>I')"
        )

    def wrap(fn: Fn) -> Decoder:
        check_arity(fn, 1, "decoder", "payload")
        return Decoder(fn, header_length, length_fmt, "framed")

    return wrap


def encoder(fn: Fn) -> Encoder:
    """Decorate ``fn(output) -> bytes`` for a sink (``str`` is sent as UTF-8, ``None`` skipped)."""
    check_arity(fn, 1, "encoder", "data")
    return Encoder(fn, "plain")
