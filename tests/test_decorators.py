import pickle
import struct

import pytest

import wallaroo
import wallaroo.experimental as wx
from wallaroo.decorators import (
    Computation,
    StateComputation,
    as_bytes,
    normalize_key,
    to_bytes,
)
from wallaroo.errors import UserCodeError


@wallaroo.computation(name="double")
def double(x):
    return x * 2


@wallaroo.state_computation(name="seed style")
def seed_style(data, state):
    return (data, True)


class Total:
    def __init__(self):
        self.n = 0


@wallaroo.state_computation(name="later style", state=Total)
def later_style(data, state):
    return data


def test_decorated_objects_remember_name_and_contract():
    assert isinstance(double, Computation)
    assert double.name() == "double"
    assert double(21) == 42
    assert seed_style.returns_persist is True
    assert seed_style.state_factory is None
    assert later_style.returns_persist is False
    assert isinstance(later_style.initial_state(), Total)
    assert isinstance(later_style, StateComputation)


def test_decorated_objects_pickle_by_reference():
    for obj in (double, seed_style, later_style):
        assert pickle.loads(pickle.dumps(obj)) is obj


def test_multi_variants():
    @wallaroo.computation_multi(name="split")
    def split(s):
        return s.split()

    @wallaroo.state_computation_multi(name="m", state=Total)
    def m(data, state):
        return [data]

    assert split.multi and m.multi and not m.returns_persist


@pytest.mark.parametrize(
    ("decorator", "arity"),
    [
        (wallaroo.computation(name="c"), 1),
        (wallaroo.computation_multi(name="c"), 1),
        (wallaroo.state_computation(name="s"), 2),
        (wallaroo.state_computation(name="s", state=Total), 2),
        (wallaroo.state_computation_multi(name="s"), 2),
        (wallaroo.key_extractor, 1),
        (wallaroo.partition, 1),
        (wallaroo.decoder(header_length=4, length_fmt=">I"), 1),
        (wallaroo.encoder, 1),
        (wx.stream_message_encoder, 1),
        (wx.stream_message_decoder, 1),
        (wx.octet_message_encoder, 1),
        (wx.octet_message_decoder, 1),
    ],
)
def test_wrong_arity_is_refused_at_decoration_time(decorator, arity):
    def wrong(a, b, c):
        return a

    with pytest.raises(wallaroo.WallarooParameterError) as info:
        decorator(wrong)
    message = str(info.value)
    assert "wrong" in message
    assert f"exactly {arity} argument" in message
    assert "change its signature" in message


def test_defaults_and_star_args_are_accepted():
    @wallaroo.computation(name="ok")
    def ok(a, b=1):
        return a

    @wallaroo.state_computation(name="ok2")
    def ok2(*args):
        return args

    assert ok(1) == 1


def test_required_keyword_only_parameter_is_refused():
    with pytest.raises(wallaroo.WallarooParameterError, match="keyword-only parameter 'k'"):

        @wallaroo.computation(name="kw")
        def kw(a, *, k):
            return a


def test_computation_needs_a_name():
    with pytest.raises(wallaroo.WallarooParameterError, match=r'computation\(name="my step"\)'):
        wallaroo.computation(None)


def test_state_must_be_a_class():
    with pytest.raises(wallaroo.WallarooParameterError, match="state class itself"):
        wallaroo.state_computation(name="x", state=42)


def test_framed_decoder():
    @wallaroo.decoder(header_length=2, length_fmt=">H")
    def dec(b):
        return b.decode()

    assert dec.header_length() == 2
    assert dec.payload_length(struct.pack(">H", 300)) == 300
    assert dec.decode(b"hi") == "hi"


def test_decoder_header_and_format_must_agree():
    with pytest.raises(wallaroo.WallarooParameterError, match="make them agree"):
        wallaroo.decoder(header_length=4, length_fmt=">H")
    with pytest.raises(wallaroo.WallarooParameterError, match="from 1 to 8"):
        wallaroo.decoder(header_length=9, length_fmt=">Q")
    with pytest.raises(wallaroo.WallarooParameterError, match="not a struct format"):
        wallaroo.decoder(header_length=4, length_fmt="?!")


def test_connector_codecs_pass_payload_bytes():
    enc = wx.stream_message_encoder(lambda s: s)
    dec = wx.octet_message_decoder(lambda b: b[::-1])
    assert enc.encode("héllo") == "héllo".encode()
    assert enc.encode(None) is None
    assert dec.decode(b"abc") == b"cba"
    assert dec.header_length() == 4
    assert dec.payload_length(b"\x00\x00\x01\x00") == 256
    with pytest.raises(TypeError, match="an encoder's result must be bytes, str or None, got int"):
        enc.encode(5)


def test_to_bytes_is_strict_and_as_bytes_lenient():
    class Sub(bytes):
        pass

    for value in (b"ab", "ab", bytearray(b"ab"), memoryview(b"ab"), Sub(b"ab")):
        assert type(to_bytes(value)) is bytes and to_bytes(value) == b"ab"
        assert type(as_bytes(value)) is bytes and as_bytes(value) == b"ab"
    assert to_bytes(None) is None
    assert as_bytes(None) == b"None" and as_bytes(32.0) == b"32.0" and as_bytes("é") == "é".encode()
    with pytest.raises(TypeError, match="^a key must be bytes, str or None, got float$"):
        to_bytes(1.5, "a key")
    with pytest.raises(wallaroo.WallarooError, match="a Kafka value must be"):
        to_bytes(1, "a Kafka value", UserCodeError)


def test_keys_are_strings():
    assert normalize_key("k") == "k"
    assert normalize_key(65) == "A"
    assert normalize_key(b"\xe2\x82\xac") == "€"
    with pytest.raises(TypeError):
        normalize_key(1.5)
    with pytest.raises(TypeError):
        normalize_key(True)
