import random
import string
import struct

from wallaroo.testing import run

ARGS = ["--in", "127.0.0.1:7010", "--out", "127.0.0.1:7002"]


def test_votes_are_totalled_per_letter_in_order():
    rng = random.Random(11)
    votes = [(rng.choice("abcxyz!"), rng.randint(0, 100)) for _ in range(2000)]
    payloads = [struct.pack(">sI", letter.encode(), n) for letter, n in votes]
    result = run("alphabet", args=ARGS, inputs={"alphabet": payloads})

    totals = {}
    expected = []
    for letter, n in votes:
        totals[letter] = totals.get(letter, 0) + n
        expected.append(f"{letter} => {totals[letter]}\n".encode())
    assert result.output() == expected


def test_the_key_list_creates_partitions_up_front_and_new_keys_are_dynamic():
    payloads = [struct.pack(">sI", b"!", 5)]
    result = run("alphabet", args=ARGS, inputs={"alphabet": payloads})
    state = result.states["letter state"]
    assert set(string.ascii_lowercase) <= set(state)
    assert state["!"].votes == 5
    assert state["q"].votes == 0
