"""wallaroo.engine.directories: every default directory of a run, in one place."""

from pathlib import Path

from wallaroo.engine.directories import deadletter_directory, resilience_directory


def test_a_given_directory_wins_else_the_default_in_the_current_or_given_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resilience_directory() == tmp_path / "wallaroo-resilience"
    assert deadletter_directory(None) == tmp_path / "wallaroo-deadletter"
    assert resilience_directory("", "/srv/app") == Path("/srv/app/wallaroo-resilience")
    assert deadletter_directory(None, "/srv/app") == Path("/srv/app/wallaroo-deadletter")
    assert resilience_directory("/data/r", "/srv/app") == Path("/data/r")
    assert deadletter_directory(Path("/data/r")) == Path("/data/r")
