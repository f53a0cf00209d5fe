"""``wallaroo.logsummary``: rate-limited log lines and peer text made safe for a log line."""

import logging

import pytest

from wallaroo.logsummary import LogSummary, clip


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def summary(caplog):
    caplog.set_level(logging.INFO, logger="t.summary")
    clock = FakeClock()
    return LogSummary(logging.getLogger("t.summary"), interval=10.0, what="dead letters",
                      clock=clock), clock  # fmt: skip


def lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "t.summary"]


def test_a_burst_gives_the_first_line_one_summary_and_the_total(summary, caplog):
    log, clock = summary
    for i in range(10_000):
        clock.now = 1000.0 + i * 0.0009  # 10,000 events in 9 s
        log.event("stage 'decode'", "first dead letter at %s", "decode")
    assert lines(caplog) == ["first dead letter at decode"]
    clock.now = 1010.5
    assert log.flush() == 1
    assert log.flush() == 0  # nothing new since
    log.close()
    assert lines(caplog) == [
        "first dead letter at decode",
        "stage 'decode': 9,999 more dead letters in the last 10 s (10,000 in all)",
        "stage 'decode': 10000 dead letters in all",
    ]


def test_an_event_after_the_interval_logs_the_summary_itself(summary, caplog):
    log, clock = summary
    assert log.event("a", "first a")
    assert not log.event("a", "first a")
    clock.now += 11
    assert log.event("a", "first a")
    assert lines(caplog)[-1] == "a: 2 more dead letters in the last 11 s (3 in all)"
    assert log.total("a") == 3 and log.total() == 3


def test_causes_are_counted_apart_and_a_single_event_has_no_total(summary, caplog):
    log, _clock = summary
    log.event("a", "first a")
    log.event("b", "first b")
    log.event("b", "first b")
    log.close()
    assert lines(caplog) == ["first a", "first b", "b: 2 dead letters in all"]
    assert log.total() == 0  # close forgets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("two\nlines", "two\\nlines"),
        ("\x1b[31mred", "\\x1b[31mred"),
        (
            "x\r\n2026 CRITICAL wallaroo.worker: forged",
            "x\\r\\n2026 CRITICAL wallaroo.worker: forged",
        ),
        ("back\\slash", "back\\\\slash"),
        ("sep\u2028arator\x85", "sep\\u2028arator\\x85"),
        (b"bytes\n\xff", "bytes\\n\ufffd"),
    ],
)
def test_clip_escapes_control_characters(text, expected):
    assert clip(text) == expected


def test_clip_clips_long_text_and_says_how_long_it_was():
    out = clip("a" * 60_000)
    assert out == "a" * 200 + "... (60,000 characters)"
    assert len(clip("é" * 10, limit=4)) < 40


def test_clip_never_raises():
    class Bad:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert clip(Bad()) == "<unprintable Bad>"
