"""Streaming: bounded read-ahead, progress only on a terminal."""

import io
import threading
import time

from rich.console import Console

from facecli.io.prefetch import prefetch
from facecli.pipeline.report import Reporter


def test_prefetch_reads_a_bounded_number_ahead():
    produced = []
    lock = threading.Lock()

    def items():
        for i in range(100):
            with lock:
                produced.append(i)
            yield i

    it = prefetch(items(), depth=2)
    first = next(it)
    time.sleep(0.3)  # give the producer every chance to run ahead
    with lock:
        ahead = len(produced) - 1
    assert first == 0 and ahead <= 3, f"producer ran {ahead} items ahead"
    assert list(it) == list(range(1, 100))


def test_prefetch_reraises_producer_errors_in_order():
    def items():
        yield 1
        raise ValueError("boom")

    it = prefetch(items())
    assert next(it) == 1
    try:
        next(it)
    except ValueError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("error not raised")


def _reporter(terminal: bool, quiet: bool = False) -> tuple[Reporter, io.StringIO]:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=100)
    return Reporter(quiet=quiet, console=console), buf


def test_progress_bar_on_a_terminal_only():
    for terminal, quiet, shown in ((True, False, True), (False, False, False), (True, True, False)):
        reporter, buf = _reporter(terminal, quiet)
        with reporter.progress() as bar:
            assert (bar is not None) == shown
            if bar is not None:
                bar.start("clip.mp4", 10)
                bar.advance(10)
        assert ("clip.mp4" in buf.getvalue()) == shown


def test_errors_always_one_line_each():
    reporter, buf = _reporter(False, quiet=True)
    reporter.error("a.jpg: not a readable image (cannot identify)")
    reporter.info("hidden when quiet")
    assert buf.getvalue().splitlines() == ["error: a.jpg: not a readable image (cannot identify)"]
    assert reporter.errors == ["a.jpg: not a readable image (cannot identify)"]
