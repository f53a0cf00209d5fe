"""A crash-safe checkpoint store on local disk.

One checkpoint is one file, ``checkpoint-<id>.wck``, written to a temporary name, fsynced,
renamed into place, and the directory fsynced: after a crash a checkpoint file either exists
whole or not at all. Layout::

    blob 0 | blob 1 | ... | manifest (JSON) | u32 manifest length | sha256 of all before | b"WCK1"

The manifest holds the checkpoint's metadata (id, application, key groups and hash function,
source positions, sink offsets, ...) and, for every blob, its name, offset, length and CRC-32.
Reading checks the trailer magic (truncation), the SHA-256 of the whole file, then each blob's
CRC-32 as it is read: a damaged checkpoint is always detected, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wallaroo.errors import CheckpointError

__all__ = ["Checkpoint", "CheckpointStore"]

MAGIC = b"WCK1"
_TRAILER = struct.Struct(">I32s4s")
_NAME = re.compile(r"^checkpoint-(\d{12})\.wck$")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint read back from disk: its manifest, and its blobs on demand."""

    path: Path
    manifest: Mapping[str, Any]
    _data: bytes

    @property
    def id(self) -> int:
        """The checkpoint's id (from its manifest)."""
        return int(self.manifest["id"])

    def blob_names(self) -> list[str]:
        """The names of the blobs it holds, in the order they were written."""
        return [b["name"] for b in self.manifest["blobs"]]

    def blob(self, name: str) -> bytes:
        """The blob ``name``, after checking its CRC-32.

        Raises:
            CheckpointError: no such blob, or its CRC-32 does not match.
        """
        for entry in self.manifest["blobs"]:
            if entry["name"] == name:
                start, length = int(entry["offset"]), int(entry["length"])
                data = self._data[start : start + length]
                if len(data) != length or zlib.crc32(data) != int(entry["crc32"]):
                    raise CheckpointError(
                        f"checkpoint {self.path}: blob {name!r} failed its CRC-32 check"
                    )
                return data
        raise CheckpointError(f"checkpoint {self.path} has no blob {name!r}")


class CheckpointStore:
    """Checkpoint files in one directory; keeps the newest ``keep`` of them.

    Args:
        directory: where checkpoint files live (created if missing).
        keep: how many checkpoints :meth:`prune` keeps (at least 2, so that an operator can fall
            back to the previous one).
    """

    def __init__(self, directory: str | os.PathLike[str], keep: int = 3) -> None:
        self.directory = Path(directory)
        self.keep = max(2, keep)
        #: called after the temporary file is written, before it is renamed (fault tests)
        self.before_rename: Callable[[], None] | None = None

    def path_of(self, checkpoint_id: int) -> Path:
        """The file checkpoint ``checkpoint_id`` has (or would have) in the store."""
        return self.directory / f"checkpoint-{checkpoint_id:012d}.wck"

    def ids(self) -> list[int]:
        """Ids of the checkpoint files present, oldest first (damaged ones included)."""
        if not self.directory.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def write(self, manifest: Mapping[str, Any], blobs: Iterable[tuple[str, bytes]]) -> Path:
        """Write a checkpoint durably; return its path.

        ``manifest`` must hold an int ``id``; the store adds the blob table. After this returns,
        the checkpoint survives a crash of the process or the machine.

        Raises:
            CheckpointError: the file could not be written.
        """
        checkpoint_id = int(manifest["id"])
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path_of(checkpoint_id)
        tmp = final.with_suffix(".tmp")
        table: list[dict[str, Any]] = []
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as f:
                offset = 0
                for name, data in blobs:
                    f.write(data)
                    digest.update(data)
                    table.append(
                        {
                            "name": name,
                            "offset": offset,
                            "length": len(data),
                            "crc32": zlib.crc32(data),
                        }
                    )
                    offset += len(data)
                head = json.dumps({**manifest, "blobs": table}, sort_keys=True).encode()
                f.write(head)
                digest.update(head)
                f.write(_TRAILER.pack(len(head), digest.digest(), MAGIC))
                f.flush()
                os.fsync(f.fileno())
            if self.before_rename is not None:
                self.before_rename()
            os.replace(tmp, final)
            _fsync_dir(self.directory)
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint {final}: {exc}") from exc
        return final

    def read(self, checkpoint_id: int) -> Checkpoint:
        """Read and verify checkpoint ``checkpoint_id``.

        Raises:
            CheckpointError: missing, truncated, or its SHA-256 does not match.
        """
        path = self.path_of(checkpoint_id)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
        if len(data) < _TRAILER.size or data[-4:] != MAGIC:
            raise CheckpointError(f"checkpoint {path} is truncated (no end marker)")
        head_len, digest, _ = _TRAILER.unpack_from(data, len(data) - _TRAILER.size)
        body = memoryview(data)[: len(data) - _TRAILER.size]
        actual = hashlib.sha256(body).digest()
        if actual != digest or head_len > len(body):
            raise CheckpointError(
                f"checkpoint {path} failed its SHA-256 check (stored {digest.hex()[:16]}..., "
                f"computed {actual.hex()[:16]}...)"
            )
        try:
            manifest = json.loads(bytes(body[len(body) - head_len :]))
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {path} has an unreadable manifest") from exc
        if int(manifest.get("id", -1)) != checkpoint_id:
            raise CheckpointError(f"checkpoint {path} holds id {manifest.get('id')}")
        return Checkpoint(path, manifest, data)

    def latest(self, *, fall_back: bool = False) -> tuple[Checkpoint | None, list[str]]:
        """The newest checkpoint, and notes about damaged ones that were skipped.

        Args:
            fall_back: when the newest file is damaged, use the newest intact one instead of
                raising (the operator asked for it).

        Raises:
            CheckpointError: the newest checkpoint is damaged and ``fall_back`` is False.
        """
        notes: list[str] = []
        for checkpoint_id in reversed(self.ids()):
            try:
                return self.read(checkpoint_id), notes
            except CheckpointError as exc:
                if not fall_back:
                    raise
                notes.append(str(exc))
        return None, notes

    def prune(self) -> list[Path]:
        """Delete all but the newest ``keep`` checkpoints (and stray temporary files)."""
        removed: list[Path] = []
        for checkpoint_id in self.ids()[: -self.keep]:
            path = self.path_of(checkpoint_id)
            path.unlink(missing_ok=True)
            removed.append(path)
        for stray in self.directory.glob("checkpoint-*.tmp"):
            stray.unlink(missing_ok=True)
        return removed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
