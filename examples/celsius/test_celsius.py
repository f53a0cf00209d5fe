import struct

import celsius

import wallaroo
from wallaroo.testing import run


def feed(*values):
    return [struct.pack(">f", v) for v in values]


def test_seed_celsius_app_runs_from_encoded_bytes_to_encoder_bytes():
    result = run("celsius", inputs={"celsius_feed": feed(0.0, 100.0, -40.0)})
    assert result.outputs == {"fahrenheit_conversion": [b"32.0", b"212.0", b"-40.0"]}
    assert result.decoded("fahrenheit_conversion") == ["32.0", "212.0", "-40.0"]
    assert result.dead_letters == ()


def test_connectors_get_the_default_ports_in_declaration_order():
    app = celsius.application_setup([])
    assert app.source_connector("celsius_feed").port == 7100
    assert app.sink_connector("fahrenheit_conversion").port == 7200
    assert app.source_connector("celsius_feed").host == "127.0.0.1"


def test_values_written_through_the_connector_encoder_arrive_too():
    # What connector.write(value) sends: the feed encoder's bytes for each value.
    result = run(celsius.application_setup, inputs={"celsius_feed": [
        bytearray(struct.pack(">f", 37.0))]})
    assert [float(v) for v in result.decoded("fahrenheit_conversion")] == [
        struct.unpack(">f", struct.pack(">f", 37.0))[0] * 1.8 + 32]


def test_a_payload_the_decoder_rejects_is_a_dead_letter_and_the_rest_flows():
    result = run("celsius", inputs={"celsius_feed": [*feed(1.0), b"bad", *feed(2.0)]})
    assert len(result.outputs["fahrenheit_conversion"]) == 2
    (letter,) = result.dead_letters
    assert letter.stage == "decoder decode_feed"
    assert letter.payload_bytes() == b"bad"
    assert "unpack requires a buffer of 4 bytes" in letter.message


def test_the_app_module_is_unchanged_public_api():
    assert isinstance(celsius.multiply, wallaroo.decorators.Computation)
