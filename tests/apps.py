"""Small building blocks shared by the API and engine tests."""

import wallaroo
import wallaroo.experimental as wx


@wallaroo.decoder(header_length=4, length_fmt=">I")
def text(b):
    return b.decode()


@wx.stream_message_decoder
def text_payload(b):
    return b.decode()


@wallaroo.encoder
def plain(x):
    return str(x)


@wallaroo.computation(name="upper")
def upper(s):
    return s.upper()


@wallaroo.computation(name="drop empty")
def drop_empty(s):
    return s or None


@wallaroo.computation_multi(name="split")
def split(s):
    return s.split()


@wallaroo.key_extractor
def first_letter(s):
    return s[0]


@wallaroo.partition
def first_letter_partition(s):
    return s[0]


class Count:
    def __init__(self):
        self.n = 0


@wallaroo.state_computation(name="count", state=Count)
def count(s, state):
    state.n += 1
    return f"{s}:{state.n}"


@wallaroo.state_computation(name="seed count")
def seed_count(s, state):
    state.n += 1
    return (f"{s}:{state.n}", True)


def tcp_source(name="in", port=7010):
    return wallaroo.TCPSourceConfig(name, "127.0.0.1", port, text)


def tcp_sink(port=7002):
    return wallaroo.TCPSinkConfig("127.0.0.1", port, plain)
