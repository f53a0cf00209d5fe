"""W2: word count. A line of words in; for every word, ``b"<word> <running count>\\n"`` out
(split, key by word, a running count per word in keyed state)."""

import wallaroo
import wallaroo.experimental as wx
from bench.apps.common import bench_args, sink, source

SOURCE = "lines"
SINK = "counts"


def application_setup(args):
    opts = bench_args(args)
    pipeline = (
        source(SOURCE, opts, decode)
        .to(split)
        .key_by(word_of)
        .to(count_word)
        .to_sink(sink(SINK, opts, encode))
    )
    return wallaroo.build_application("W2 word count", pipeline)


@wx.stream_message_decoder
def decode(data):
    return data.decode()


@wallaroo.computation_multi(name="split")
def split(line):
    return line.split()


@wallaroo.key_extractor
def word_of(word):
    return word


class WordTotal:
    def __init__(self):
        self.count = 0


@wallaroo.state_computation(name="count word", state=WordTotal)
def count_word(word, total):
    total.count += 1
    return (word, total.count)


@wx.stream_message_encoder
def encode(pair):
    return f"{pair[0]} {pair[1]}\n".encode()
