"""Candidate on-disk stores for a ``disk`` state backend: SQLite, LMDB and RocksDB (rocksdict).

``python -m bench.state_stores [--keys N] [--json FILE]`` (N = 1,000,000; ``--keys 100000`` for
a quick run). LMDB and rocksdict need ``pip install lmdb rocksdict``; a store that is not
importable is skipped with a line saying what to install.

Each store runs in its own subprocess (so its peak RSS, ``VmHWM``, is its own) in a fresh
temporary directory. Keys are ``f"k{i}"`` in key group ``crc32(utf8(key)) % 256``; values are
``pickle.dumps`` of a one-int ``Counter`` (about 60 bytes). SQLite stores ``(grp, key, value)``
in a ``WITHOUT ROWID`` table keyed by ``(grp, key)``; LMDB and RocksDB store the key as one
byte of key group followed by the UTF-8 key, so that a key group is a contiguous key range.
Steps, in order, timed on the wall clock:

1. load: the N keys, in key-group order, in transactions (write batches) of 10,000;
2. reads: 200,000 point reads of a hot set (a random 10% of the keys), then 200,000 of
   uniformly random keys, 1,000 per read transaction;
3. read-modify-write: 200,000 updates of random keys (get, unpickle, increment, pickle, put),
   1,000 per transaction (write batch), the hot path of a batch of messages;
4. scan: each key group in turn, a range scan of keys and values (ms per group; s for all);
5. delete: a random 1% of the keys, 1,000 per transaction;
6. snapshot: the cheapest consistent copy for a checkpoint (SQLite ``backup()``, LMDB
   ``env.copy()``, RocksDB ``Checkpoint``, which flushes and hard-links its SST files): the
   time, its bytes and those of its files that are not hard links to the store's;
7. reopen: close, open again and read one key (what recovery pays; the page cache is warm).

Plus the bytes on disk after the load (allocated blocks), the peak RSS and its excess over the
RSS before the store was opened (the benchmark's key lists). No store syncs on each commit:
recovery rebuilds state from the last checkpoint, so SQLite runs WAL with
``synchronous=NORMAL``, LMDB ``sync=False``, RocksDB its default unsynced WAL.
"""

from __future__ import annotations

import abc
import argparse
import importlib.util
import json
import pickle
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version as dist_version
from itertools import takewhile
from pathlib import Path
from typing import Any

from bench.proc import peak_rss, rss
from wallaroo.engine.keys import key_group

GROUPS = 256
LOAD_BATCH = 10_000
BATCH = 1_000
READS = 200_000
UPDATES = 200_000
STORES = {"sqlite": "sqlite3", "lmdb": "lmdb", "rocksdict": "rocksdict"}
MB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]

Key = tuple[int, str]  # (key group, key)


class Counter:
    """The state value: one int, pickled."""

    def __init__(self, count: int) -> None:
        self.count = count


def _raw(grp: int, key: str) -> bytes:
    return bytes((grp,)) + key.encode()


class Store(abc.ABC):
    """One candidate store in a directory: the operations the benchmark times (each store
    implements every one)."""

    version = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.open()

    @abc.abstractmethod
    def open(self) -> None:
        """Open (or create) the store in :attr:`path`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close it (everything written is on disk)."""

    @abc.abstractmethod
    def put_batch(self, items: list[tuple[int, str, bytes]]) -> None:
        """Write ``(key group, key, value)`` items in one transaction."""

    @abc.abstractmethod
    def update_batch(self, keys: list[Key]) -> None:
        """Read, increment and write back each key's counter, in one transaction."""

    @abc.abstractmethod
    def delete_batch(self, keys: list[Key]) -> None:
        """Delete the keys, in one transaction."""

    @abc.abstractmethod
    def snapshot(self, dest: Path) -> None:
        """Write a consistent copy of the store to ``dest``."""

    @abc.abstractmethod
    def get_batch(self, keys: list[Key]) -> int:
        """Read each key, in one read transaction; the number found."""

    @abc.abstractmethod
    def scan(self, grp: int) -> int:
        """Iterate the keys and values of one key group; their number."""

    def reopen(self, key: Key) -> int:
        """Open again (after :meth:`close`) and read ``key``; 1 if found."""
        self.open()
        return self.get_batch([key])


class SqliteStore(Store):
    version = f"SQLite {sqlite3.sqlite_version}"

    def open(self) -> None:
        self.db = sqlite3.connect(self.path / "state.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA cache_size=-65536")  # 64 MiB
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS state (grp INTEGER, key TEXT, value BLOB, "
            "PRIMARY KEY (grp, key)) WITHOUT ROWID"
        )

    def close(self) -> None:
        self.db.close()

    def put_batch(self, items: list[tuple[int, str, bytes]]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?, ?)", items)

    def get_batch(self, keys: list[Key]) -> int:
        select = "SELECT value FROM state WHERE grp = ? AND key = ?"
        with self.db:
            self.db.execute("BEGIN")
            return sum(self.db.execute(select, key).fetchone() is not None for key in keys)

    def update_batch(self, keys: list[Key]) -> None:
        select = "SELECT value FROM state WHERE grp = ? AND key = ?"
        update = "UPDATE state SET value = ? WHERE grp = ? AND key = ?"
        with self.db:
            self.db.execute("BEGIN")
            for grp, key in keys:
                (value,) = self.db.execute(select, (grp, key)).fetchone()
                self.db.execute(update, (_bump(value), grp, key))

    def scan(self, grp: int) -> int:
        rows = self.db.execute("SELECT key, value FROM state WHERE grp = ? ORDER BY key", (grp,))
        return sum(1 for _ in rows)

    def delete_batch(self, keys: list[Key]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM state WHERE grp = ? AND key = ?", keys)

    def snapshot(self, dest: Path) -> None:
        dest.mkdir()
        copy = sqlite3.connect(dest / "state.db")
        self.db.backup(copy)
        copy.close()


class LmdbStore(Store):
    def open(self) -> None:
        import lmdb

        self.version = "LMDB {}.{}.{} (lmdb {})".format(*lmdb.version(), lmdb.__version__)
        self.env = lmdb.open(str(self.path), map_size=16 << 30, sync=False, metasync=False)

    def close(self) -> None:
        self.env.close()

    def put_batch(self, items: list[tuple[int, str, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            txn.cursor().putmulti([(_raw(g, k), v) for g, k, v in items])

    def get_batch(self, keys: list[Key]) -> int:
        with self.env.begin() as txn:
            return sum(txn.get(_raw(g, k)) is not None for g, k in keys)

    def update_batch(self, keys: list[Key]) -> None:
        with self.env.begin(write=True) as txn:
            for g, k in keys:
                raw = _raw(g, k)
                txn.put(raw, _bump(txn.get(raw)))

    def scan(self, grp: int) -> int:
        with self.env.begin() as txn:
            cursor = txn.cursor()
            if not cursor.set_range(bytes((grp,))):  # else the cursor would start at the first key
                return 0
            return sum(1 for _ in takewhile(lambda item: item[0][0] == grp, cursor))

    def delete_batch(self, keys: list[Key]) -> None:
        with self.env.begin(write=True) as txn:
            for g, k in keys:
                txn.delete(_raw(g, k))

    def snapshot(self, dest: Path) -> None:
        dest.mkdir()
        self.env.copy(str(dest))


class RocksStore(Store):
    def open(self) -> None:
        import rocksdict

        self.rd = rocksdict
        self.version = f"RocksDB (rocksdict {dist_version('rocksdict')})"
        self.db = rocksdict.Rdict(str(self.path / "rocks"), rocksdict.Options(raw_mode=True))

    def close(self) -> None:
        self.db.close()

    def put_batch(self, items: list[tuple[int, str, bytes]]) -> None:
        batch = self.rd.WriteBatch(raw_mode=True)
        for g, k, v in items:
            batch.put(_raw(g, k), v)
        self.db.write(batch)

    def get_batch(self, keys: list[Key]) -> int:
        return sum(self.db.get(_raw(g, k)) is not None for g, k in keys)

    def update_batch(self, keys: list[Key]) -> None:
        # Reads do not see the batch's own writes: a key twice in a batch keeps one update.
        batch = self.rd.WriteBatch(raw_mode=True)
        for g, k in keys:
            raw = _raw(g, k)
            batch.put(raw, _bump(self.db.get(raw)))
        self.db.write(batch)

    def scan(self, grp: int) -> int:
        options = self.rd.ReadOptions()
        if grp + 1 < GROUPS:
            options.set_iterate_upper_bound(bytes((grp + 1,)))
        return sum(1 for _ in self.db.items(from_key=bytes((grp,)), read_opt=options))

    def delete_batch(self, keys: list[Key]) -> None:
        batch = self.rd.WriteBatch(raw_mode=True)
        for g, k in keys:
            batch.delete(_raw(g, k))
        self.db.write(batch)

    def snapshot(self, dest: Path) -> None:
        self.rd.Checkpoint(self.db).create_checkpoint(str(dest))


KINDS: dict[str, type[Store]] = {"sqlite": SqliteStore, "lmdb": LmdbStore, "rocksdict": RocksStore}


def disk_bytes(path: Path, new_only: bool = False) -> int:
    """Allocated bytes of the files under ``path``, each inode once (``new_only``: only files
    that are not hard-linked elsewhere)."""
    seen: set[int] = set()
    total = 0
    for file in [path] if path.is_file() else path.rglob("*"):
        st = file.stat()
        if file.is_file() and st.st_ino not in seen and not (new_only and st.st_nlink > 1):
            seen.add(st.st_ino)
            total += st.st_blocks * 512
    return total


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _bump(value: bytes | None) -> bytes:
    assert value is not None
    counter = pickle.loads(value)
    counter.count += 1
    return pickle.dumps(counter)


def _batches(work: Callable[[list[Key]], int | None], items: list[Key], size: int = BATCH) -> int:
    """``work`` on each batch of ``size`` items in turn; the sum of what it returns."""
    return sum(work(chunk) or 0 for chunk in _chunks(items, size))


def measure(name: str, n: int) -> dict[str, Any]:
    """All the steps for one store in a fresh temporary directory; the figures."""
    rng = random.Random(1)
    keys: list[Key] = [(key_group(f"k{i}", GROUPS), f"k{i}") for i in range(n)]
    ordered = sorted(keys)
    hot = rng.sample(keys, max(1, n // 10))
    hot_reads = [rng.choice(hot) for _ in range(READS)]
    uniform_reads = [rng.choice(keys) for _ in range(READS)]
    updates = [rng.choice(keys) for _ in range(UPDATES)]
    deletes = rng.sample(keys, max(1, n // 100))
    probe = min(set(keys) - set(deletes))  # a key still there after the deletes
    out: dict[str, Any] = {"store": name, "keys": n, "base_rss": rss()}

    def timed(step: str, work: Callable[[], object], expect: object = None) -> float:
        start = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - start
        assert expect is None or result == expect, (step, result, expect)
        print(f"  {name}: {step} {seconds:.2f} s", file=sys.stderr, flush=True)
        return seconds

    with tempfile.TemporaryDirectory(prefix=f"state-{name}-") as d:
        root = Path(d)
        (root / "db").mkdir()
        store = KINDS[name](root / "db")
        out["version"] = store.version

        def load(chunk: list[Key]) -> None:
            store.put_batch([(g, k, pickle.dumps(Counter(0))) for g, k in chunk])

        read = store.get_batch
        out["value_bytes"] = len(pickle.dumps(Counter(0)))
        out["load_per_s"] = n / timed("load", lambda: _batches(load, ordered, LOAD_BATCH))
        out["disk_bytes"] = disk_bytes(root / "db")
        seconds = timed("hot reads", lambda: _batches(read, hot_reads), READS)
        out["hot_reads_per_s"] = READS / seconds
        seconds = timed("uniform reads", lambda: _batches(read, uniform_reads), READS)
        out["uniform_reads_per_s"] = READS / seconds
        seconds = timed("read-modify-write", lambda: _batches(store.update_batch, updates))
        out["updates_per_s"] = UPDATES / seconds
        out["scan_all_s"] = timed("scan", lambda: sum(map(store.scan, range(GROUPS))), n)
        out["scan_group_ms"] = out["scan_all_s"] / GROUPS * 1000
        seconds = timed("delete", lambda: _batches(store.delete_batch, deletes))
        out["delete_per_s"] = len(deletes) / seconds
        snap = root / "snapshot"
        out["snapshot_s"] = timed("snapshot", lambda: store.snapshot(snap))
        out["snapshot_bytes"] = disk_bytes(snap)
        out["snapshot_new_bytes"] = disk_bytes(snap, new_only=True)
        shutil.rmtree(snap)
        store.close()
        out["reopen_ms"] = timed("reopen", lambda: store.reopen(probe), 1) * 1000
        out["disk_bytes_end"] = disk_bytes(root / "db")
        store.close()
    out["peak_rss"] = peak_rss()
    return out


def worker() -> None:
    """The subprocess's entry: ``STORE N``; prints the figures as one JSON line."""
    name, n = sys.argv[1], int(sys.argv[2])
    print(json.dumps(measure(name, n)), flush=True)


COLUMNS = (
    ("store", "version", "s"),
    ("load keys/s", "load_per_s", ",.0f"),
    ("hot reads/s", "hot_reads_per_s", ",.0f"),
    ("uniform reads/s", "uniform_reads_per_s", ",.0f"),
    ("RMW updates/s", "updates_per_s", ",.0f"),
    ("scan ms/group", "scan_group_ms", ".2f"),
    ("scan 256 s", "scan_all_s", ".2f"),
    ("delete keys/s", "delete_per_s", ",.0f"),
    ("snapshot s", "snapshot_s", ".3f"),
    ("snapshot MB (not linked)", "snapshot", "s"),
    ("reopen ms", "reopen_ms", ".1f"),
    ("disk MB", "disk_mb", ".1f"),
    ("peak RSS MB (over base)", "rss", "s"),
)


def render(results: list[dict[str, Any]]) -> str:
    """The figures as a Markdown table, one row per store."""
    lines = ["| " + " | ".join(c[0] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for result in results:
        r = dict(result, disk_mb=result["disk_bytes"] / MB)
        r["snapshot"] = f"{r['snapshot_bytes'] / MB:.1f} ({r['snapshot_new_bytes'] / MB:.1f})"
        r["rss"] = f"{r['peak_rss'] / MB:.0f} (+{(r['peak_rss'] - r['base_rss']) / MB:.0f})"
        lines.append("| " + " | ".join(format(r[key], fmt) for _, key, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys to load (1,000,000)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated subset")
    args = parser.parse_args(argv)
    results = []
    for name in args.stores.split(","):
        if importlib.util.find_spec(STORES[name]) is None:
            print(f"{name}: not installed, skipped (`pip install {STORES[name]}` to measure it)")
            continue
        print(f"{name}: {args.keys:,} keys", file=sys.stderr, flush=True)
        code = "from bench.state_stores import worker; worker()"
        done = subprocess.run(
            [sys.executable, "-c", code, name, str(args.keys)],
            cwd=ROOT,
            check=False,
            stdout=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:
            print(f"{name}: failed (exit {done.returncode})")
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{args.keys:,} keys, values of {results[0]['value_bytes'] if results else '?'} bytes")
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
