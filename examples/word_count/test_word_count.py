import random
import re
from collections import Counter

import pytest

from wallaroo.testing import run

ARGS = ["--in", "Split and Count@127.0.0.1:7010", "--out", "127.0.0.1:7002"]
SEED_ARGS = ["--in", "127.0.0.1:7010", "--out", "127.0.0.1:7002"]
LINE = re.compile(r"^(\S+) => (\d+)\n$")


def make_lines(n_lines=3000, seed=7):
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(400)] + ["Hello,", "WORLD!", "it's"]
    return [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 12)))
            for _ in range(n_lines)]


def expected_counts(lines):
    punctuation = "".join(chr(c) for c in range(33, 127) if not chr(c).isalnum())
    words = [w.strip(punctuation + " ") for line in lines for w in line.lower().split()]
    return Counter(w for w in words if w)


def final_counts(payloads):
    last = {}
    progress = {}
    for payload in payloads:
        word, count = LINE.match(payload.decode()).groups()
        count = int(count)
        # Per key, counts arrive in order: 1, 2, 3, ...
        assert count == progress.get(word, 0) + 1, (word, count)
        progress[word] = count
        last[word] = count
    return Counter(last)


@pytest.mark.parametrize(("module", "args"), [
    ("word_count", ARGS),
    ("word_count_builder", SEED_ARGS),
])
def test_word_count_equals_collections_counter(module, args):
    lines = make_lines()
    result = run(module, args=args,
                 inputs={"Split and Count": [line.encode() for line in lines]})
    (payloads,) = result.outputs.values()
    expected = expected_counts(lines)
    assert final_counts(payloads) == expected
    assert len(payloads) == sum(expected.values())
    assert result.dead_letters == ()


def test_state_holds_one_object_per_word():
    lines = make_lines(500, seed=3)
    result = run("word_count", args=ARGS, inputs={"Split and Count": [x.encode() for x in lines]})
    states = result.states["count word"]
    assert {w: s.count for w, s in states.items()} == dict(expected_counts(lines))
