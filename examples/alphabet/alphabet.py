"""Alphabet votes, seed generation: ``to_state_partition`` with a key list (a to z).

Each message is a letter and a number of votes (``>sI``); the output is the letter's running
total, ``"a => 12\n"``. Letters outside the list still get their partition on first use.

    machida --application-module alphabet --in 127.0.0.1:7010 --out 127.0.0.1:7002
"""

import string
import struct

import wallaroo


def application_setup(args):
    in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]

    ab = wallaroo.ApplicationBuilder("alphabet")
    ab.new_pipeline("alphabet", wallaroo.TCPSourceConfig(in_host, in_port, decode_votes))
    ab.to_state_partition(add_votes, TotalVotes, "letter state", partition,
                          list(string.ascii_lowercase))
    ab.to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_votes))
    return ab.build()


class Votes:
    def __init__(self, letter, votes):
        self.letter = letter
        self.votes = votes


class TotalVotes:
    def __init__(self):
        self.letter = "X"
        self.votes = 0

    def update(self, votes):
        self.letter = votes.letter
        self.votes += votes.votes

    def get_votes(self):
        return Votes(self.letter, self.votes)


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_votes(data):
    letter, votes = struct.unpack(">sI", data)
    return Votes(letter.decode("ascii"), votes)


@wallaroo.partition
def partition(data):
    return data.letter


@wallaroo.state_computation(name="add votes")
def add_votes(data, state):
    state.update(data)
    return (state.get_votes(), True)


@wallaroo.encoder
def encode_votes(votes):
    return f"{votes.letter} => {votes.votes}\n"
