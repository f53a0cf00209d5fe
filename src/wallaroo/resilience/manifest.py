"""What a checkpoint records besides its state blobs: the :class:`Manifest`.

Both backends write the same manifest (the Ray backend adds ``"backend": "ray"`` and its number
of workers), so either restores the other's checkpoints. On disk it is the JSON object of
:meth:`Manifest.to_json` (the store adds its blob table, ``"blobs"``)::

    {"version": 1, "id": 7, "app": "Word Count", "worker": "worker1", "key_groups": 256,
     "hash": "crc32-utf8", "time_ns": 1796697174951834800,
     "states": {"word totals": [3, 17]},                   # state -> key groups with a blob
     "sources": {"words": {"3166058244093749619": 10900}}, # stream -> position, per source
     "generators": {"ticks": {"started": true, "next": "gASVBQ..."}},  # base64 of serialize()
     "sinks": {"out": {"offset": 7900, "txn": "Word Count-w-worker1-id-0:c_id=7"}},
     "backend": "embedded"}                                # "ray" adds "workers": 3

Manifests written before it was versioned (no ``"version"``; read as version 0) have the same
fields, without ``backend`` (they are the embedded worker's unless they say ``"ray"``); they
are read as they are. A manifest of a newer version than :data:`MANIFEST_VERSION` is refused.

A state blob is named ``state/<state>/<key group>`` (:func:`blob_name`,
:func:`parse_blob_name`); a state's name may itself contain ``/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wallaroo.engine.keys import HASH_FUNCTION
from wallaroo.errors import CheckpointError
from wallaroo.resilience.store import Checkpoint

__all__ = [
    "BACKENDS",
    "MANIFEST_VERSION",
    "GeneratorPosition",
    "Manifest",
    "SinkPosition",
    "blob_name",
    "parse_blob_name",
]

MANIFEST_VERSION = 1
"""The version :meth:`Manifest.to_json` writes (0: the unversioned format before it)."""
BACKENDS = ("embedded", "ray")
_PREFIX = "state/"


def blob_name(state: str, group: int) -> str:
    """The name of the blob holding key group ``group`` of state ``state``.

    Args:
        state: the state's name (not empty; it may contain ``/``).
        group: the key group (0 or more).

    Raises:
        CheckpointError: an empty state name or a negative key group.
    """
    if not state or isinstance(group, bool) or not isinstance(group, int) or group < 0:
        raise CheckpointError(f"no blob name for state {state!r}, key group {group!r}")
    return f"{_PREFIX}{state}/{group}"


def parse_blob_name(name: str) -> tuple[str, int]:
    """``(state, key group)`` of a blob named by :func:`blob_name`.

    Args:
        name: the blob's name, ``state/<state>/<key group>``.

    Raises:
        CheckpointError: ``name`` is not of that form (the message names the blob).
    """
    state, _, group = name.removeprefix(_PREFIX).rpartition("/")
    if not name.startswith(_PREFIX) or not state or not (group.isascii() and group.isdigit()):
        raise CheckpointError(f"checkpoint blob {name!r} is not named state/<state>/<key group>")
    return state, int(group)


@dataclass(frozen=True, slots=True)
class GeneratorPosition:
    """Where a generator source stands.

    Attributes:
        started: whether it has produced its first value.
        next: base64 (ASCII) of the application's ``serialize`` of its next value; None
            before it started or when the next value is None.
    """

    started: bool
    next: str | None


@dataclass(frozen=True, slots=True)
class SinkPosition:
    """Where a connector sink stands.

    Attributes:
        offset: its output offset at the checkpoint's barrier.
        txn: the checkpoint's two-phase-commit transaction id (None: no transaction).
    """

    offset: int
    txn: str | None


@dataclass(frozen=True, slots=True)
class Manifest:
    """Everything a checkpoint records besides its state blobs (see the module docstring).

    Treat the mappings as read-only.

    Attributes:
        checkpoint_id: the checkpoint's id (``"id"``), from 1.
        app: the application's name.
        worker: the worker's name (``--name``).
        key_groups: the number of key groups states are split into.
        hash_function: how keys map to key groups (``"hash"``).
        time_ns: wall-clock time of the checkpoint, in ns since the epoch.
        states: state name -> the key groups it holds a blob for, ascending.
        sources: source name -> stream (a connector stream id, a Kafka partition) -> position
            (the last processed point of reference, the next offset), for replayable sources.
        generators: generator source name -> its position.
        sinks: connector sink name -> its offset and transaction.
        backend: ``"embedded"`` or ``"ray"``: who wrote it.
        workers: the Ray backend's number of workers (None for the embedded worker).
        version: the format's version (0: read from an unversioned manifest).
    """

    checkpoint_id: int
    app: str
    worker: str
    key_groups: int
    hash_function: str = HASH_FUNCTION
    time_ns: int = 0
    states: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    sources: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    generators: Mapping[str, GeneratorPosition] = field(default_factory=dict)
    sinks: Mapping[str, SinkPosition] = field(default_factory=dict)
    backend: str = "embedded"
    workers: int | None = None
    version: int = MANIFEST_VERSION

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object (what :meth:`CheckpointStore.write` takes); always
        in the current format, :data:`MANIFEST_VERSION`."""
        data: dict[str, Any] = {
            "version": MANIFEST_VERSION,
            "id": self.checkpoint_id,
            "app": self.app,
            "worker": self.worker,
            "key_groups": self.key_groups,
            "hash": self.hash_function,
            "time_ns": self.time_ns,
            "states": {name: list(groups) for name, groups in self.states.items()},
            "sources": {
                name: {str(k): v for k, v in positions.items()}
                for name, positions in self.sources.items()
            },
            "generators": {
                name: {"started": g.started, "next": g.next} for name, g in self.generators.items()
            },
            "sinks": {name: {"offset": s.offset, "txn": s.txn} for name, s in self.sinks.items()},
            "backend": self.backend,
        }
        if self.workers is not None:
            data["workers"] = self.workers
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "a checkpoint") -> Manifest:
        """Read a manifest of any version up to :data:`MANIFEST_VERSION` (unversioned ones
        included); keys it does not know, such as the store's ``"blobs"``, are ignored.

        Args:
            data: the manifest's JSON object.
            where: what holds it, for error messages (``"checkpoint <path>"``).

        Raises:
            CheckpointError: a field is missing or of the wrong type, or the version is newer
                than this wallaroo reads.
        """
        r = _Reader(data, where)
        version = r.integer("version", 0)
        if version > MANIFEST_VERSION:
            raise CheckpointError(
                f"{where} has a manifest of version {version}; this wallaroo reads versions "
                f"up to {MANIFEST_VERSION}: upgrade wallaroo to recover from it"
            )
        backend = r.text("backend", "embedded")
        if backend not in BACKENDS:
            raise CheckpointError(f"{where}: manifest field 'backend' is {backend!r}")
        workers = data.get("workers")
        return cls(
            checkpoint_id=r.integer("id"),
            app=r.text("app"),
            worker=r.text("worker"),
            key_groups=r.integer("key_groups"),
            hash_function=r.text("hash"),
            time_ns=r.integer("time_ns", 0),
            states=r.states(),
            sources=r.sources(),
            generators=r.generators(),
            sinks=r.sinks(),
            backend=backend,
            workers=None if workers is None else r.integer("workers"),
            version=version,
        )

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> Manifest:
        """The manifest of a checkpoint read from the store.

        Raises:
            CheckpointError: see :meth:`from_json` (the message names the file).
        """
        return cls.from_json(checkpoint.manifest, where=f"checkpoint {checkpoint.path}")

    def check(self, *, app: str, worker: str, key_groups: int, where: str, reader: str) -> None:
        """Refuse to recover from another application's, worker's or key grouping's checkpoint.

        Args:
            app: the application recovering.
            worker: its worker name (``--name``).
            key_groups: its number of key groups (the hash function is this wallaroo's).
            where: the checkpoint, for the message (``"checkpoint <path>"``).
            reader: who recovers, for the message (``"this worker"``).

        Raises:
            CheckpointError: it belongs to another application or worker name, or uses
                another number of key groups or hash function.
        """
        if self.app != app or self.worker != worker:
            raise CheckpointError(
                f"{where} belongs to application {self.app!r}, worker {self.worker!r}, not "
                f"{app!r}/{worker!r}; use another --resilience-dir or the same --name"
            )
        if self.key_groups != key_groups or self.hash_function != HASH_FUNCTION:
            raise CheckpointError(
                f"{where} uses {self.key_groups} key groups hashed with {self.hash_function}; "
                f"{reader} uses {key_groups} and {HASH_FUNCTION}"
            )


_REQUIRED: Any = object()


class _Reader:
    """Typed reads of a manifest's fields, each failure naming the field."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def _bad(self, key: str, what: str) -> CheckpointError:
        return CheckpointError(
            f"{self.where}: manifest field {key!r} is not {what}: {self.data[key]!r:.200}"
        )

    def _value(self, key: str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise CheckpointError(f"{self.where}: its manifest has no field {key!r}")
        return default

    def integer(self, key: str, default: Any = _REQUIRED) -> int:
        value = self._value(key, default)
        if not _is_int(value):
            raise self._bad(key, "an integer")
        return int(value)

    def text(self, key: str, default: Any = _REQUIRED) -> str:
        value = self._value(key, default)
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def _mapping(self, key: str) -> Mapping[str, Any]:
        value = self._value(key, {})
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise self._bad(key, "an object")
        return value

    def states(self) -> dict[str, tuple[int, ...]]:
        found = {}
        for name, groups in self._mapping("states").items():
            if not isinstance(groups, list) or not all(_is_int(g) for g in groups):
                raise self._bad("states", "state -> list of key groups")
            found[name] = tuple(sorted(int(g) for g in groups))
        return found

    def sources(self) -> dict[str, dict[int, int]]:
        found = {}
        for name, positions in self._mapping("sources").items():
            if not isinstance(positions, Mapping) or not all(
                _is_int(v) and str(k).lstrip("-").isdigit() for k, v in positions.items()
            ):
                raise self._bad("sources", "source -> {stream: position}")
            found[name] = {int(k): int(v) for k, v in positions.items()}
        return found

    def generators(self) -> dict[str, GeneratorPosition]:
        found = {}
        for name, entry in self._mapping("generators").items():
            if (
                not isinstance(entry, Mapping)
                or not isinstance(entry.get("started"), bool)
                or not isinstance(entry.get("next", 0), str | None)
            ):
                raise self._bad("generators", "generator -> {started, next}")
            found[name] = GeneratorPosition(entry["started"], entry["next"])
        return found

    def sinks(self) -> dict[str, SinkPosition]:
        found = {}
        for name, entry in self._mapping("sinks").items():
            if (
                not isinstance(entry, Mapping)
                or not _is_int(entry.get("offset"))
                or not isinstance(entry.get("txn", 0), str | None)
            ):
                raise self._bad("sinks", "sink -> {offset, txn}")
            found[name] = SinkPosition(int(entry["offset"]), entry["txn"])
        return found


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
