"""The code blocks of README.md and docs/ (subfolders included): each is run, or says why not.

The line just above a fence says what this test does with the block:

* ``<!-- tested -->``: run as written, with a timeout: ``python -c CODE`` for ``python``,
  ``bash -euo pipefail -c CODE`` for ``bash``/``sh``/``shell``. The working directory is a fresh
  copy of the parts of the checkout the blocks use (README.md, examples/, connectors/), so a
  block runs as it would from the repository's root and nothing is written into the work tree.
  Every process the block starts is stopped afterwards (it runs in its own session).
* ``<!-- tested as NAME -->``: the content of the file NAME, written into that directory for the
  tested blocks after it on the same page, which run it (an application module, for example).
* ``<!-- not run: REASON -->``: not run, for the reason given.

Blocks of ``python``, ``bash``, ``sh``, ``shell`` and ``console`` must have one of these; every
fence must name its language (``text``, ``json``, ... for output samples and file formats, which
need no marker), so that a block of commands can never slip in unmarked.

Blocks that need a service read its address from an environment variable with the usual
default (``KAFKA_BROKERS``, ``AWS_ENDPOINT_URL``, ``POSTGRES_DSN``), which this test sets to the
test session's servers; Redis and RabbitMQ are expected at their default addresses. Blocks use
fixed ports (7100, 7200, ...), so runs of this file on one machine take turns (a file lock).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
COPIED = ("README.md", "examples", "connectors")  # what the blocks use of the checkout
COMMAND_LANGUAGES = {"python", "bash", "sh", "shell", "console"}
RUNNABLE = {"python", "bash", "sh", "shell"}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
MARKER = re.compile(r"^<!-- (tested|tested as (\S+)|not run: (.+?)) -->$")
TIMEOUT = 60.0
LOCK = Path("/tmp/wallaroo-docs-test.lock")

# A block that mentions the key needs the fixture; the value is the environment variable it
# reads the address from (None: the service's default address, which the fixture must be).
SERVICES = {
    "KAFKA_BROKERS": ("kafka_bootstrap", "KAFKA_BROKERS"),
    "AWS_ENDPOINT_URL": ("moto_endpoint", "AWS_ENDPOINT_URL"),
    "POSTGRES_DSN": ("postgres_dsn", "POSTGRES_DSN"),
    "redis-cli": ("redis_port", None),
    "amqp://": ("rabbitmq_url", None),
}
DEFAULT_ADDRESSES = {"redis_port": 6379, "rabbitmq_url": "amqp://guest:guest@127.0.0.1:5672/%2F"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, from 1
    language: str
    marker: str | None  # the marker's text, or None
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str | None:
        """``tested``, ``file``, ``not run``, ``bad`` (an unknown marker) or None."""
        if self.marker is None:
            return None
        m = MARKER.match(self.marker)
        if m is None:
            return "bad"
        return "tested" if m[1] == "tested" else "file" if m[2] else "not run"

    @property
    def file_name(self) -> str:
        m = MARKER.match(self.marker or "")
        assert m is not None and m[2], self
        return m[2]


def page_blocks(page: Path) -> Iterator[Block]:
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, language = m[1], m[2]
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
        above = lines[i - 1].strip() if i else ""
        code = "".join(line.removeprefix(indent) + "\n" for line in lines[i + 1 : end])
        marker = above if above.startswith("<!--") else None
        yield Block(page, i + 1, language, marker, code)
        i = end + 1


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in page_blocks(page)]


def params_of_tested_blocks() -> Iterator[object]:
    for block in all_blocks():
        if block.kind == "tested":
            yield pytest.param(block, id=block.where)


def test_every_command_block_is_run_or_says_why_not():
    problems = []
    blocks = all_blocks()
    for block in blocks:
        if not block.language:
            problems.append(f"{block.where}: a fence without a language (text, json, bash, ...)")
        elif block.language in COMMAND_LANGUAGES and block.kind is None:
            problems.append(
                f"{block.where}: a {block.language} block with neither "
                "<!-- tested --> nor <!-- not run: REASON --> above it"
            )
        elif block.kind == "bad":
            problems.append(f"{block.where}: an unknown marker {block.marker}")
        elif block.kind == "tested" and block.language not in RUNNABLE:
            problems.append(f"{block.where}: a {block.language} block cannot be run")
        elif block.kind == "file" and not any(
            later.kind == "tested"
            and later.page == block.page
            and later.line > block.line
            and Path(block.file_name).stem in later.code
            for later in blocks
        ):
            problems.append(f"{block.where}: no tested block after it uses {block.file_name}")
    assert not problems, "\n".join(problems)
    assert sum(block.kind == "tested" for block in blocks) >= 20


def test_help_texts_show_no_markup():
    for command in ("demo", "send", "receive", "run", "top", "scale", "connector"):
        out = subprocess.run(
            [sys.executable, "-m", "wallaroo", command, "--help"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert "``" not in out.stdout, (command, out.stdout)


@pytest.fixture
def take_turns() -> Iterator[None]:
    """One block at a time on this machine: other runs of this file use the same ports."""
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def sandbox(block: Block, directory: Path) -> Path:
    """A copy of what the blocks use of the checkout, with the page's files so far."""
    cwd = directory / "checkout"
    cwd.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, cwd / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, cwd / name)
    for earlier in page_blocks(block.page):
        if earlier.line >= block.line:
            break
        if earlier.kind == "file":
            (cwd / earlier.file_name).write_text(earlier.code)
    return cwd


def block_env(block: Block, request: pytest.FixtureRequest) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # not even __pycache__ in the work tree's src/
    for needle, (fixture, variable) in SERVICES.items():
        if needle not in block.code:
            continue
        address = request.getfixturevalue(fixture)
        if variable is not None:
            env[variable] = str(address)
        elif address != DEFAULT_ADDRESSES[fixture]:
            pytest.fail(
                f"{block.where} needs {fixture} at {DEFAULT_ADDRESSES[fixture]}, "
                f"the test session has {address}"
            )
    return env


def stop_session(process: subprocess.Popen[bytes]) -> None:
    """Stop every process of the block's session: SIGTERM, SIGKILL after 5 s, give up at 10 s."""
    start = time.monotonic()
    while time.monotonic() - start < 10:
        process.poll()  # reaps the shell, which would otherwise stay in the group as a zombie
        sig = signal.SIGTERM if time.monotonic() - start < 5 else signal.SIGKILL
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    if process.poll() is None:
        process.kill()
        process.wait()


def tails(cwd: Path, out: Path, err: Path) -> str:
    parts = [f"--- stdout\n{out.read_text()[-4000:]}", f"--- stderr\n{err.read_text()[-6000:]}"]
    for log in sorted(cwd.rglob("*.log")):
        parts.append(f"--- {log.relative_to(cwd)}\n{log.read_text()[-3000:]}")
    # Some blocks work where a user would, in /tmp/<name>-example: their logs too.
    for log in sorted(Path("/tmp").glob("*-example/*.log")):
        if log.stat().st_mtime > time.time() - TIMEOUT - 30:
            parts.append(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)


@pytest.mark.parametrize("block", list(params_of_tested_blocks()))
def test_doc_block_runs(block, tmp_path, request, take_turns):
    cwd = sandbox(block, tmp_path)
    env = block_env(block, request)
    cmd = (
        [sys.executable, "-c", block.code]
        if block.language == "python"
        else ["bash", "-euo", "pipefail", "-c", block.code]
    )
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        # Files, not pipes: processes a block leaves in the background would hold a pipe open.
        process = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            returncode = process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            stop_session(process)
    assert returncode is not None, f"{block.where} ran over {TIMEOUT} s\n{tails(cwd, out, err)}"
    assert returncode == 0, f"{block.where} exited {returncode}\n{tails(cwd, out, err)}"
