"""The application of the transactional Kafka tests: a keyed count behind Kafka connectors.

Input ``rec-NNNNN`` (the Kafka record's value); it is keyed by ``NNNNN % KEYS`` and numbered
per key, so the output ``REC-NNNNN#<n>`` is only right when every record reached the state
exactly once and in order (a replay that repeated or skipped a record shifts the numbers). The
sink decoder gives ``(key, value)`` to ``kafka_sink``. Ports come from the environment
(``FEED_PORT``, ``RESULTS_PORT``).
"""

from kafka_app import connector_configs

import wallaroo
import wallaroo.experimental

COOKIE = "Kafka-Txn-Cookie"
KEYS = 40


def expected_output(count):
    """What the pipeline outputs for the records ``rec-00000`` ... produced in order."""
    return [f"REC-{i:05d}#{i // KEYS + 1}" for i in range(count)]


class Count:
    def __init__(self):
        self.n = 0


def application_setup(args):
    feed, results = connector_configs(COOKIE, decode_result)
    pipeline = wallaroo.source("numbered", feed).key_by(key_of).to(number).to_sink(results)
    return wallaroo.build_application("Kafka numbered", pipeline)


@wallaroo.key_extractor
def key_of(text):
    return str(int(text.rpartition("-")[2]) % KEYS)


@wallaroo.state_computation(name="number", state=Count)
def number(text, state):
    state.n += 1
    return f"{text.upper()}#{state.n}"


@wallaroo.experimental.stream_message_decoder
def decode_result(data):
    text = data.decode()
    return (str(int(text[4:9]) % KEYS), text)  # (key, value)
