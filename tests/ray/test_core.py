"""The Ray backend's transport-neutral core, without Ray: slot maps, barrier alignment,
channels, and worker engines wired through an in-memory actor simulator.

The simulator delivers each channel's calls in order (as Ray does for a synchronous actor with
retries off) but interleaves channels at random, never runs an actor inside its own call, and
lets a blocked sender wait for its oldest call. Checkpoint barriers injected in the middle of the
input must give, on every worker, exactly the state of the input before them, and the output
must equal the embedded engine's.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter, deque
from pathlib import Path
from typing import Any

import pytest

import wallaroo
from diagnostics import error_lines
from wallaroo.engine.deadletter import DeadLetterLog
from wallaroo.engine.local import LocalEngine
from wallaroo.engine.wiring import Placement
from wallaroo.errors import ConfigurationError
from wallaroo.plan.compiler import compile_application
from wallaroo.plan.physical import Exchange
from wallaroo.ray_backend.aligner import BarrierAligner
from wallaroo.ray_backend.channels import Barrier, Channel, Data, KeyedRoute, SinkChannelPort
from wallaroo.ray_backend.slots import SlotMap
from wallaroo.ray_backend.topology import PlanGraph
from wallaroo.ray_backend.worker_core import WorkerCore
from wallaroo.resilience.state_codec import decode_group
from wallaroo.testing import Harness

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# -- slot maps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 3, 7, 256])
def test_slot_maps_are_contiguous_and_even(workers):
    slots = SlotMap.even(256, workers)
    sizes = Counter(slots.owners)
    assert set(sizes) == set(range(workers))
    assert max(sizes.values()) - min(sizes.values()) <= 1
    assert list(slots.owners) == sorted(slots.owners)  # contiguous ranges, in worker order
    assert sum(len(slots.groups_of(w)) for w in range(workers)) == 256


def test_growing_moves_whole_ranges_and_bad_counts_are_refused():
    two, three = SlotMap.even(256, 2), SlotMap.even(256, 3)
    assert two.ranges() == [(0, 127), (128, 255)]
    assert three.ranges() == [(0, 85), (86, 170), (171, 255)]
    assert 0 < two.moved(three) < 256
    with pytest.raises(ValueError, match="cannot spread 256 key groups over 0 workers"):
        SlotMap.even(256, 0)


# -- barrier alignment ----------------------------------------------------------------------------


def test_an_input_is_held_after_its_barrier_until_every_barrier_is_in():
    aligner = BarrierAligner(frozenset({"a", "b"}))
    assert not aligner.barrier("a", 1)
    assert aligner.blocked("a") and not aligner.blocked("b")
    aligner.hold("a", "x1")
    aligner.hold("a", "x2")
    assert aligner.barrier("b", 1)
    assert aligner.complete() == [("a", "x1"), ("a", "x2")]
    assert not aligner.blocked("a")
    assert not aligner.barrier("a", 1)  # a duplicate of a completed checkpoint is ignored
    assert not aligner.blocked("a")


# -- channels -------------------------------------------------------------------------------------


class FakeCalls:
    """A transport whose calls finish when the test says (or when a sender waits)."""

    def __init__(self) -> None:
        self.sent: list[list[list[Any]]] = []
        self.finished: set[int] = set()
        self.failed: dict[int, str] = {}

    def submit(self, items: list[list[Any]]) -> int:
        self.sent.append(items)
        return len(self.sent) - 1

    def done(self, refs):
        return [r for r in refs if r in self.finished]

    def wait_oldest(self, ref, timeout):
        self.finished.add(ref)
        return True

    def failure(self, ref):
        return self.failed.get(ref)


def test_a_channel_batches_merges_and_keeps_barriers_behind_data():
    calls = FakeCalls()
    channel = Channel("a->b", calls.submit, calls, blocking=True, batch=5)
    channel.data(1, ["a", "b"], ["k", "k"], None)
    channel.data(1, ["c"], ["k"], None)
    assert calls.sent == []
    channel.data(2, ["d", "e"], ["j", "j"], None)  # 5 messages: sent
    assert calls.sent == [[Data(1, ["a", "b", "c"], ["k", "k", "k"], None),
                           Data(2, ["d", "e"], ["j", "j"], None)]]  # fmt: skip
    channel.data(1, ["f"], ["k"], None)
    channel.barrier(1, 7)
    assert calls.sent[1] == [Data(1, ["f"], ["k"], None), Barrier(1, 7)]


def test_a_blocking_channel_waits_and_a_non_blocking_one_queues():
    calls = FakeCalls()
    blocking = Channel("s->w", calls.submit, calls, blocking=True, window=2, batch=1)
    for i in range(4):
        blocking.data(0, [i], [str(i)], None)
    assert len(calls.sent) == 4 and blocking.waits == 2 and blocking.in_flight == 2
    calls = FakeCalls()
    queuing = Channel("w->w", calls.submit, calls, blocking=False, window=2, batch=1)
    for i in range(4):
        queuing.data(0, [i], [str(i)], None)
    assert len(calls.sent) == 2 and queuing.queued == 2
    calls.finished.update({0, 1})
    queuing.pump()
    assert len(calls.sent) == 4 and queuing.queued == 0
    assert [c[0].values for c in calls.sent] == [[0], [1], [2], [3]]


def test_a_failed_call_breaks_the_channel():
    calls = FakeCalls()
    channel = Channel("s->w", calls.submit, calls, blocking=True, window=1, batch=1)
    channel.data(0, ["a"], ["k"], None)
    calls.failed[0] = "ActorDiedError: gone"
    channel.data(0, ["b"], ["k"], None)
    assert channel.broken == "ActorDiedError: gone"
    channel.data(0, ["c"], ["k"], None)
    assert len(calls.sent) == 1  # nothing more is sent


# -- worker engines through a simulator ------------------------------------------------------------


class Sim:
    """In-memory actors (see the module docstring)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.queues: dict[tuple[str, str], deque[tuple[int, list[list[Any]]]]] = {}
        self.handlers: dict[str, Any] = {}
        self.finished: set[int] = set()
        self.busy: set[str] = set()
        self.next_ref = 0

    def submitter(self, sender: str, receiver: str):
        def submit(items):
            self.next_ref += 1
            self.queues.setdefault((sender, receiver), deque()).append((self.next_ref, items))
            return self.next_ref

        return submit

    def step(self) -> bool:
        ready = [k for k, q in self.queues.items() if q and k[1] not in self.busy]
        if not ready:
            return False
        sender, receiver = self.rng.choice(ready)
        ref, items = self.queues[(sender, receiver)].popleft()
        self.busy.add(receiver)
        try:
            self.handlers[receiver](sender, items)
        finally:
            self.busy.discard(receiver)
        self.finished.add(ref)
        return True

    def run(self) -> None:
        while self.step():
            pass

    # the Transport protocol
    def done(self, refs):
        return [r for r in refs if r in self.finished]

    def wait_oldest(self, ref, timeout):
        while ref not in self.finished:
            assert self.step(), "deadlock: a blocked sender waits for nothing"
        return True

    def failure(self, ref):
        return None


class SinkRecorder:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.barriers: list[tuple[str, int]] = []

    def __call__(self, sender, items):
        for item in items:
            if isinstance(item, Data):
                self.payloads.extend(item.values)
            else:
                self.barriers.append((sender, item.checkpoint_id))


class Total:
    def __init__(self):
        self.n = 0


@wallaroo.decoder(header_length=4, length_fmt=">I")
def text(b):
    return b.decode()


@wallaroo.computation_multi(name="words")
def words(line):
    return line.split()


@wallaroo.key_extractor
def word_key(w):
    return w


@wallaroo.key_extractor
def letter_key(item):
    return item[0][0]


@wallaroo.state_computation(name="count words", state=Total)
def count_words(w, total):
    total.n += 1
    return (w, total.n)


@wallaroo.state_computation(name="count letters", state=Total)
def count_letters(item, total):
    total.n += 1
    return item


class Pairs(wallaroo.Aggregation):
    def initial_accumulator(self):
        return []

    def update(self, w, acc):
        acc.append(w)

    def combine(self, a, b):
        return a + b

    def output(self, key, acc):
        return (key, len(acc))


@wallaroo.encoder
def line_out(x):
    return f"{x}\n" if not isinstance(x, tuple) else f"{x[0]}#{x[1]}\n"


def _sources():
    a = wallaroo.source("A", wallaroo.TCPSourceConfig("a", "h", 1, text)).to(words)
    b = wallaroo.source("B", wallaroo.TCPSourceConfig("b", "h", 3, text)).to(words)
    return a.merge(b)


def single_stage():
    """Two sources, words counted per word."""
    p = _sources().key_by(word_key).to(count_words)
    return wallaroo.build_application("single", p.to_sink(wallaroo.TCPSinkConfig("h", 2, line_out)))


def multi_stage():
    """Words counted per word, in windows of 2 per word, then counted per first letter: a
    window feeding its next segment, and an exchange between workers."""
    p = (_sources().key_by(word_key).to(count_words)
         .to(wallaroo.count_windows(2).over(Pairs))
         .key_by(letter_key).to(count_letters))  # fmt: skip
    return wallaroo.build_application("multi", p.to_sink(wallaroo.TCPSinkConfig("h", 2, line_out)))


class SimCluster:
    """Two sources and ``workers`` workers of an application, through a :class:`Sim`."""

    def __init__(self, app, workers: int, seed: int) -> None:
        self.plan = compile_application(app)
        self.sim = Sim(seed)
        self.sink = SinkRecorder()
        self.sim.handlers["k0"] = self.sink
        slots = SlotMap.even(self.plan.key_groups, workers)
        loaded = wallaroo.loader.load_application(app)
        self.workers = [
            WorkerCore(loaded, self.plan, j, slots, DeadLetterLog()) for j in range(workers)
        ]
        names = [f"w{j}" for j in range(workers)]
        for core in self.workers:
            me = core.name
            core.wire(
                [self.sim.submitter(me, n) for n in names],
                [self.sim.submitter(me, "k0")],
                self.sim,
            )
            self.sim.handlers[me] = core.deliver
        self.sources = []
        graph = PlanGraph(self.plan)
        for source in self.plan.sources:
            me = f"s{source.index}"
            channels = [Channel(f"{me}->{n}", self.sim.submitter(me, n), self.sim, blocking=True,
                                window=2, batch=7) for n in names]  # fmt: skip
            seg = graph.segment[source.segment]
            assert isinstance(seg.target, Exchange)
            placement = Placement(
                segments=[seg.id],
                key_groups=(),
                route=lambda target, channels=channels: KeyedRoute(target, slots, channels, None),
            )
            engine = LocalEngine(self.plan, [SinkChannelPort(channels[0])], placement=placement)
            edges = graph.segment_edges(seg, workers, None)
            self.sources.append((engine, channels, edges))

    def push(self, source: int, lines: list[str]) -> None:
        engine, channels, _ = self.sources[source]
        for start in range(0, len(lines), 5):
            engine.process(source, [x.encode() for x in lines[start : start + 5]])
            if self.sim.rng.random() < 0.5:
                self.sim.step()
        for channel in channels:
            channel.flush()

    def barrier(self, source: int, n: int) -> None:
        _, channels, edges = self.sources[source]
        for _, dest, segment in edges:
            channels[dest].barrier(segment, n)

    def states(self, n: int) -> dict[str, dict[str, Any]]:
        """State name -> key -> state, from every worker's part of checkpoint ``n``."""
        found: dict[str, dict[str, Any]] = {}
        for core in self.workers:
            part = core.collect(n)
            assert part is not None, f"{core.name} did not complete checkpoint {n}"
            assert part["error"] is None
            for blob_name, blob in part["blobs"]:
                state = blob_name.split("/")[1]
                found.setdefault(state, {}).update(
                    decode_group(blob, wallaroo.serialization.deserialize)
                )
        return found


def lines_of(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice("apple avocado banana berry cherry date fig grape kiwi".split())
                     + str(rng.randrange(30)) for _ in range(rng.randint(1, 6)))
            for _ in range(n)]  # fmt: skip


def per_key(payloads: list[bytes], sep: bytes) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = {}
    for p in payloads:
        found.setdefault(p.split(sep)[0], []).append(p)
    return found


@pytest.mark.parametrize(("make", "workers", "seed"), [
    (single_stage, 1, 1), (single_stage, 3, 2), (multi_stage, 2, 3), (multi_stage, 3, 4),
])  # fmt: skip
def test_aligned_barriers_snapshot_exactly_the_input_before_them(make, workers, seed):
    a, b = lines_of(seed, 120), lines_of(seed + 100, 90)
    cluster = SimCluster(make(), workers, seed)
    cluster.push(0, a[:60])
    cluster.push(1, b[:40])
    cluster.barrier(0, 1)
    cluster.push(0, a[60:])  # after the barrier: held where source 1's barrier is missing
    cluster.sim.run()
    assert all(c.collect(1) is None for c in cluster.workers)  # source 1's barrier is missing
    cluster.barrier(1, 1)
    cluster.push(1, b[40:])
    cluster.sim.run()
    # The embedded engine on the input before the barriers gives the checkpointed states.
    before = Harness(make())
    before.push("a", [x.encode() for x in a[:60]])
    before.push("b", [x.encode() for x in b[:40]])
    checkpointed = cluster.states(1)
    for name in ("count words", "count letters"):
        if name in before.engine.states:
            want = {k: s.n for k, s in before.engine.states[name].states.items()}
            assert {k: s.n for k, s in checkpointed[name].items()} == want, name
    # Every barrier reached the sink once per worker.
    assert sorted(cluster.sink.barriers) == sorted((f"w{j}", 1) for j in range(workers))
    # The whole output equals the embedded run's: per key in order, and as a multiset.
    whole = Harness(make())
    whole.push("a", [x.encode() for x in a])
    whole.push("b", [x.encode() for x in b])
    expected = whole.result().output()
    got = cluster.sink.payloads
    assert Counter(got) == Counter(expected)
    assert per_key(got, b"#") == per_key(expected, b"#")
    # A second checkpoint at the end holds the whole run's states.
    cluster.barrier(0, 2)
    cluster.barrier(1, 2)
    cluster.sim.run()
    final = cluster.states(2)
    for name, store in whole.engine.states.items():
        if name in ("count words", "count letters"):
            assert {k: s.n for k, s in final[name].items()} == {
                k: s.n for k, s in store.states.items()
            }


def test_a_stage_that_feeds_itself_through_shared_state_is_refused():
    @wallaroo.state_computation(name="again", state=Total)
    def again(x, total):
        total.n += 1
        return x

    p = (wallaroo.source("A", wallaroo.TCPSourceConfig("a", "h", 1, text)).key_by(word_key)
         .to(count_words).key_by(letter_key).to(again).key_by(letter_key).to(count_words)
         .to_sink(wallaroo.TCPSinkConfig("h", 2, line_out)))  # fmt: skip
    plan = compile_application(wallaroo.build_application("loop", p))
    with pytest.raises(ConfigurationError, match="sharing the state 'Total'|feed each other"):
        PlanGraph(plan)


def test_the_backend_modules_import_no_ray():
    code = (
        "import sys\n"
        "import wallaroo.ray_backend, wallaroo.ray_backend.coordinator, "
        "wallaroo.ray_backend.runner, wallaroo.ray_backend.control\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_ray_the_backend_names_the_extra(tmp_path):
    fake = tmp_path / "ray"  # a "ray" that cannot be imported, first on the path
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no ray here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(EXAMPLES)])}
    machida = str(Path(sys.executable).parent / "machida")
    out = subprocess.run(
        [machida, "--application-module", "word_count/word_count.py", "--backend", "ray",
         "--workers", "2", "--in", "x@127.0.0.1:7010", "--out", "127.0.0.1:7002"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2
    (line,) = error_lines(out.stderr)
    assert line.startswith("machida: error: --backend ray needs Ray")
    assert "pip install 'wallaroo-py[ray]'" in line


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--workers", "3"], "--worker-count 3 needs --backend ray"),
        (["--ray-address", "127.0.0.1:6379"], "--ray-address needs --backend ray"),
        (["--backend", "ray", "--workers", "3"], None),
        (["--backend", "ray", "--worker-count", "2", "--ray-address", "h:1"], None),
    ],
)
def test_worker_flags_of_the_ray_backend(args, error):
    from wallaroo.worker.flags import parse_worker_flags

    argv = ["--application-module", "m", *args, "--in", "x"]
    if error is None:
        flags = parse_worker_flags(argv)
        assert flags.backend == "ray" and flags.worker_count > 1
        assert flags.app_args == ["--in", "x"]
    else:
        with pytest.raises(ConfigurationError, match=error):
            parse_worker_flags(argv)
