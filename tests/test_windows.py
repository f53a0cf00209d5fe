"""Windows: hand-computed firing rules, and a brute-force reference for random inputs."""

import random
from collections import Counter

import pytest

import wallaroo
from wallaroo import WallarooParameterError
from wallaroo.testing import Harness, MockClock, run

#: every test here runs on the embedded engine and on Ray (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("engine_backend")

S = 1_000_000_000  # one second in ns


class Collect(wallaroo.Aggregation):
    """The accumulator is the list of values; the output (key, sorted values)."""

    def initial_accumulator(self):
        return []

    def update(self, data, acc):
        acc.append(data[1])

    def combine(self, acc1, acc2):
        return acc1 + acc2

    def output(self, key, acc):
        return f"{key}:{','.join(map(str, sorted(acc)))}" if acc else None


class Total(wallaroo.Aggregation):
    """An immutable accumulator: update returns the new one."""

    def initial_accumulator(self):
        return 0

    def update(self, data, acc):
        return acc + data[1]

    def combine(self, acc1, acc2):
        return acc1 + acc2

    def output(self, key, acc):
        return f"{key}={acc}"


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(data):
    key, _, value = data.decode().partition(":")
    return (key, int(value))


@wallaroo.key_extractor
def key_of(message):
    return message[0]


@wallaroo.encoder
def encode(text):
    return text


def app(window, keyed=True):
    p = wallaroo.source("w", wallaroo.TCPSourceConfig("in", "127.0.0.1", 1, decode))
    if keyed:
        p = p.key_by(key_of)
    return wallaroo.build_application(
        "windows", p.to(window).to_sink(wallaroo.TCPSinkConfig("127.0.0.1", 2, encode))
    )


def feed(harness, messages):
    """messages: (key, value, time in seconds), pushed one at a time."""
    for key, value, t in messages:
        harness.push("in", [f"{key}:{value}".encode()], times=[int(t * S)])


def outputs(harness):
    return [p.decode() for p in harness.result().output()]


# -- hand-computed firing rules -------------------------------------------------------------


@pytest.mark.embedded_only  # event times across keys: Ray's watermark is per worker
def test_a_tumbling_window_fires_when_the_watermark_reaches_its_end():
    h = Harness(app(wallaroo.range_windows(wallaroo.seconds(10)).over(Collect)))
    feed(h, [("a", 1, 1), ("a", 2, 2), ("b", 5, 9.999)])
    assert outputs(h) == []
    feed(h, [("a", 3, 10)])  # watermark 10 = end of [0, 10)
    assert outputs(h) == ["a:1,2", "b:5"]
    h.end_of_input()
    assert outputs(h) == ["a:1,2", "b:5", "a:3"]


@pytest.mark.embedded_only  # event times across keys: Ray's watermark is per worker
def test_a_delay_holds_the_window_until_end_plus_delay():
    h = Harness(
        app(
            wallaroo.range_windows(wallaroo.seconds(10))
            .with_delay(wallaroo.seconds(5))
            .over(Collect)
        )
    )
    feed(h, [("a", 1, 1), ("a", 2, 12)])
    assert outputs(h) == []  # 12 < 10 + 5: the window is still open
    feed(h, [("a", 3, 7)])  # not late yet: it joins [0, 10)
    feed(h, [("b", 0, 15)])
    assert outputs(h) == ["a:1,3"]


@pytest.mark.embedded_only  # event times across keys: Ray's watermark is per worker
def test_sliding_windows_place_a_message_in_every_overlapping_window():
    h = Harness(
        app(
            wallaroo.range_windows(wallaroo.seconds(10)).with_slide(wallaroo.seconds(5)).over(Total)
        )
    )
    feed(h, [("a", 7, 7)])  # in [0, 10) and [5, 15)
    feed(h, [("z", 0, 10)])
    assert outputs(h) == ["a=7"]
    feed(h, [("z", 0, 15)])
    assert outputs(h) == ["a=7", "a=7", "z=0"]


def test_late_data_policies():
    def run_policy(policy):
        h = Harness(
            app(
                wallaroo.range_windows(wallaroo.seconds(10))
                .with_late_data_policy(policy)
                .over(Collect)
            )
        )
        feed(h, [("a", 1, 1), ("a", 2, 11)])  # [0, 10) fires with 1
        feed(h, [("a", 3, 3)])  # late: [0, 10) has fired
        h.end_of_input()
        return outputs(h), h.engine.statistics().windows[0].late

    assert run_policy("drop") == (["a:1", "a:2"], 1)
    assert run_policy("fire-per-message") == (["a:1", "a:3", "a:2"], 1)
    assert run_policy("place-in-oldest-window") == (["a:1", "a:2,3"], 1)


@pytest.mark.embedded_only  # a mock clock drives this process's engine only
def test_an_idle_window_fires_on_the_clock():
    clock = MockClock(start_ns=100 * S)
    h = Harness(app(wallaroo.range_windows(wallaroo.seconds(10)).over(Total)), clock=clock)
    h.push("in", [b"a:4", b"a:5"])  # ingest time 100 s: window [100, 110)
    clock.advance(9 * S)
    h.tick()
    assert outputs(h) == []  # idle for 9 s < range + delay
    clock.advance(2 * S)
    h.tick()
    assert outputs(h) == ["a=9"]


def test_count_windows_emit_every_n_messages_per_key():
    h = Harness(app(wallaroo.count_windows(3).over(Total)))
    h.push("in", [f"{k}:{i}".encode() for i, k in enumerate("aabaabab")])
    h.end_of_input()
    # a: 0 + 1 + 3 (then 4 and 6 wait for a third); b: 2 + 5 + 7
    assert outputs(h) == ["b=14", "a=4"] or sorted(outputs(h)) == ["a=4", "b=14"]


def test_windows_without_key_by_use_the_source_key():
    result = run(
        app(wallaroo.range_windows(wallaroo.seconds(1)).over(Total), keyed=False),
        inputs={"in": [b"a:1", b"b:2"]},
    )
    assert [p.decode() for p in result.output()] == ["in=3"]


# -- brute force ------------------------------------------------------------------------------


def reference(messages, range_s, slide_s, delay_s, policy):
    """Per key, the sorted values of every window, computed naively in event time."""
    windows = {}  # (key, start) -> values
    fired = set()
    out = []
    watermark = -1

    def fire_due():
        for (key, start), values in sorted(windows.items(), key=lambda kv: kv[0][1]):
            if (key, start) not in fired and start + range_s + delay_s <= watermark:
                fired.add((key, start))
                out.append((key, tuple(sorted(values))))

    for key, value, t in messages:
        if t > watermark:
            watermark = t
            fire_due()
        first = ((t - range_s) // slide_s) * slide_s
        starts = [s for s in range(first, t + 1, slide_s) if s <= t < s + range_s]
        open_starts = [s for s in starts if s + range_s + delay_s > watermark]
        if open_starts:
            for s in open_starts:
                windows.setdefault((key, s), []).append(value)
        elif policy == "fire-per-message":
            out.append((key, (value,)))
        elif policy == "place-in-oldest-window":
            s = ((watermark - range_s - delay_s) // slide_s + 1) * slide_s
            windows.setdefault((key, s), []).append(value)
    watermark = float("inf")
    fire_due()
    return Counter(out)


@pytest.mark.embedded_only  # out-of-order event times: Ray's watermark is per worker
@pytest.mark.parametrize("seed", range(30))
def test_random_inputs_match_a_brute_force_reference(seed):
    rng = random.Random(seed)
    range_s = rng.choice([4, 6, 10])
    slide_s = rng.choice([d for d in range(1, range_s + 1) if range_s % d == 0 or d == range_s])
    delay_s = rng.choice([0, 0, 2, 5])
    policy = rng.choice(["drop", "fire-per-message", "place-in-oldest-window"])
    messages = []
    t = 100
    for value in range(300):
        t += rng.choice([0, 0, 1, 2])
        jitter = rng.choice([0] * 8 + [-3, -7, -12])  # some out of order, some late
        messages.append((rng.choice("abc"), value, max(0, t + jitter)))
    window = (
        wallaroo.range_windows(range_s * S)
        .with_slide(slide_s * S)
        .with_delay(delay_s * S)
        .with_late_data_policy(policy)
        .over(Collect)
    )
    h = Harness(app(window))
    if seed % 2:  # one message at a time
        feed(h, messages)
    else:  # in batches of random sizes: the watermark moves inside a batch too
        i = 0
        while i < len(messages):
            chunk = messages[i : i + rng.randint(1, 40)]
            h.push(
                "in", [f"{k}:{v}".encode() for k, v, _ in chunk], times=[t * S for _, _, t in chunk]
            )
            i += len(chunk)
    h.end_of_input()
    got = Counter()
    for line in outputs(h):
        key, _, values = line.partition(":")
        got[(key, tuple(sorted(int(v) for v in values.split(","))))] += 1
    assert got == reference(messages, range_s, slide_s, delay_s, policy)


# -- misuse -----------------------------------------------------------------------------------


def test_misuse_names_the_fix():
    with pytest.raises(WallarooParameterError, match="with_slide\\(\\) may be called only once"):
        wallaroo.range_windows(10).with_slide(5).with_slide(5)
    with pytest.raises(WallarooParameterError, match="larger than the range"):
        wallaroo.range_windows(10).with_slide(20)
    with pytest.raises(WallarooParameterError, match="unknown late data policy"):
        wallaroo.range_windows(10).with_late_data_policy("keep")

    class Incomplete(wallaroo.Aggregation):
        def initial_accumulator(self):
            return 0

    with pytest.raises(WallarooParameterError, match="lacks update\\(\\), combine\\(\\), output"):
        wallaroo.range_windows(10).over(Incomplete)
    with pytest.raises(WallarooParameterError, match="wallaroo.seconds"):
        wallaroo.range_windows(0)
    with pytest.raises(WallarooParameterError, match="count >= 1"):
        wallaroo.count_windows(0)


def test_time_helpers():
    assert wallaroo.seconds(9) == 9 * S
    assert wallaroo.milliseconds(1.5) == 1_500_000
    assert wallaroo.minutes(1) == 60 * S
    assert wallaroo.hours(1) == 3600 * S
    assert wallaroo.microseconds(2) == 2000
    assert wallaroo.nanoseconds(7) == 7


@pytest.mark.embedded_only  # the harness's checkpointer is the embedded worker's
def test_window_state_survives_a_checkpoint_restore():
    """Snapshot the key groups mid-stream, restore them into a fresh engine, continue: the
    outputs equal an uninterrupted run's."""
    import pickle

    from wallaroo.resilience.state_codec import decode_group, group_blobs

    window = (
        wallaroo.range_windows(wallaroo.seconds(6)).with_slide(wallaroo.seconds(2)).over(Collect)
    )
    rng = random.Random(3)
    messages = [(rng.choice("abcd"), i, 100 + i // 3) for i in range(300)]
    whole = Harness(app(window))
    feed(whole, messages)
    whole.end_of_input()

    first = Harness(app(window))
    feed(first, messages[:150])
    blobs = {
        name: dict(group_blobs(store, pickle.dumps)) for name, store in first.engine.states.items()
    }
    second = Harness(app(window))
    for name, store in second.engine.states.items():
        for blob_name, blob in blobs[name].items():
            store.restore_group(int(blob_name.rsplit("/", 1)[1]), decode_group(blob, pickle.loads))
    second.engine.restored()
    feed(second, messages[150:])
    second.end_of_input()
    assert outputs(first) + outputs(second) == outputs(whole)
