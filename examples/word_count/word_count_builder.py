"""Word count, seed generation: ``ApplicationBuilder`` with dynamically keyed partitions.

    machida --application-module word_count_builder --in 127.0.0.1:7010 --out 127.0.0.1:7002
"""

import string

import wallaroo

PUNCTUATION = string.punctuation + " "


def application_setup(args):
    in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]

    ab = wallaroo.ApplicationBuilder("Word Count Application")
    ab.new_pipeline("Split and Count",
                    wallaroo.TCPSourceConfig(in_host, in_port, decode_lines))
    ab.to_parallel(split)
    # No key list: every new word creates its partition when it first arrives.
    ab.to_state_partition(count_word, WordTotal, "word totals", partition)
    ab.to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_word_count))
    return ab.build()


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_lines(data):
    return data.decode("utf-8")


@wallaroo.computation_multi(name="split into words")
def split(data):
    words = []
    for word in data.lower().split():
        clean = word.strip(PUNCTUATION)
        if clean:
            words.append(clean)
    return words


@wallaroo.partition
def partition(word):
    return word


class WordTotal:
    def __init__(self):
        self.count = 0


@wallaroo.state_computation(name="count word")
def count_word(word, word_total):
    word_total.count += 1
    return ((word, word_total.count), True)


@wallaroo.encoder
def encode_word_count(pair):
    word, count = pair
    return f"{word} => {count}\n"
