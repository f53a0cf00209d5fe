"""Word count, later API: split lines into words, key by word, count each word.

    machida --application-module word_count \
        --in 'Split and Count@127.0.0.1:7010' --out 127.0.0.1:7002
"""

import string

import wallaroo

PUNCTUATION = string.punctuation + " "


def application_setup(args):
    in_name, in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]

    lines = wallaroo.source("Split and Count",
                            wallaroo.TCPSourceConfig(in_name, in_host, in_port, decode_lines))
    pipeline = (lines
                .to(split)
                .key_by(extract_word)
                .to(count_word)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_word_count)))
    return wallaroo.build_application("Word Count Application", pipeline)


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_lines(data):
    return data.decode("utf-8")


@wallaroo.computation_multi(name="split into words")
def split(data):
    words = []
    for line in data.split("\n"):
        for word in line.lower().split():
            clean = word.strip(PUNCTUATION)
            if clean:
                words.append(clean)
    return words


@wallaroo.key_extractor
def extract_word(word):
    return word


class WordTotal:
    def __init__(self):
        self.count = 0


class WordCount:
    def __init__(self, word, count):
        self.word = word
        self.count = count


@wallaroo.state_computation(name="count word", state=WordTotal)
def count_word(word, word_total):
    word_total.count += 1
    return WordCount(word, word_total.count)


@wallaroo.encoder
def encode_word_count(word_count):
    return f"{word_count.word} => {word_count.count}\n".encode()
