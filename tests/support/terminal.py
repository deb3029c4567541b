"""A terminal for the tests of full-screen commands: ``in_terminal`` runs one in a
pseudo-terminal; ``Terminal`` (pyte) plays the bytes it writes onto a grid of characters,
each with its colour and weight, as a terminal would show them; ``svg`` draws that grid as a
picture for the documentation."""

from __future__ import annotations

import fcntl
import html
import itertools
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyte

ROOT = Path(__file__).resolve().parents[2]

# A dark terminal's colours, by pyte's names for the 8 ANSI ones.
BACKGROUND = "#1e2127"
FOREGROUND = "#d7dae0"
PALETTE = {
    "black": "#3f4451",
    "red": "#e06c75",
    "green": "#98c379",
    "brown": "#e5c07b",  # pyte's name for ANSI yellow
    "blue": "#61afef",
    "magenta": "#c678dd",
    "cyan": "#56b6c2",
    "white": "#d7dae0",
}
# One character cell, in SVG user units (pixels), for a 14 px monospace font.
CELL_WIDTH, CELL_HEIGHT, FONT_SIZE, MARGIN = 8.4, 18, 14, 16


@contextmanager
def in_terminal(
    args: Sequence[str], env: Mapping[str, str], *, lines: int = 40, columns: int = 200
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``python -m django ARGS`` in a pseudo-terminal of ``lines`` by ``columns``, from the
    repository's root; yields the terminal's other end and the process, killed at the end."""
    controller, terminal = pty.openpty()
    set_size(terminal, lines, columns)
    process = subprocess.Popen(
        [sys.executable, "-m", "django", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=ROOT,
        env={
            **env,
            "TERM": "xterm-256color",
            # blessed asks the terminal what it supports; this one never answers.
            "BLESSED_QUERY_TIMEOUT_SECONDS": "0.1",
        },
    )
    os.close(terminal)
    try:
        yield controller, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)


def read_until(fd: int, text: bytes, seen: bytearray, start: int = 0, timeout: float = 30) -> int:
    """Read the terminal into ``seen`` until ``text`` shows at or after ``start``; where."""
    deadline = time.monotonic() + timeout
    while (found := seen.find(text, start)) < 0:
        left = deadline - time.monotonic()
        assert left > 0, f"{text!r} never came; the terminal got ...{bytes(seen[-3000:])!r}"
        if select.select([fd], [], [], left)[0]:
            seen += _read(fd, bytes(seen[-3000:]).decode(errors="replace"))
    return found


def _read(fd: int, shown: str) -> bytes:
    """What the command wrote; once it has exited (EIO on Linux), a failure that says what
    it had ``shown``."""
    try:
        return os.read(fd, 65536)
    except OSError:
        raise AssertionError(f"the command exited; it had shown:\n{shown}") from None


def set_size(fd: int, lines: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))


class Terminal:
    """A screen of ``columns`` by ``lines``, which ``watch`` plays a command's output on."""

    def __init__(self, columns: int, lines: int) -> None:
        self.screen = pyte.Screen(columns, lines)
        self._stream = pyte.ByteStream(self.screen)

    def watch(self, fd: int, shown: Callable[[Terminal], bool], timeout: float = 30) -> None:
        """Play what the command writes to ``fd`` until ``shown(self)`` holds."""
        deadline = time.monotonic() + timeout
        while not shown(self):
            left = deadline - time.monotonic()
            assert left > 0, "the screen never showed it; it shows:\n" + "\n".join(self.text)
            if select.select([fd], [], [], left)[0]:
                self._stream.feed(_read(fd, "\n".join(self.text)))

    @property
    def text(self) -> list[str]:
        """Each line as shown, its trailing blanks removed."""
        return [line.rstrip() for line in self.screen.display]

    def row(self, starting: str) -> int:
        """The number of the first line that starts with ``starting``."""
        return next(i for i, line in enumerate(self.text) if line.startswith(starting))

    def cells(self, row: int) -> list[Any]:
        """The row's characters, as far as its text goes, with their attributes (pyte's
        ``Char``: ``fg``, ``bold``, ``reverse`` ...)."""
        line = self.screen.buffer[row]
        return [line[column] for column in range(len(self.text[row]))]


def svg(terminal: Terminal, title: str) -> str:
    """The screen as an SVG picture: each word is one ``<text>`` at its cell, stretched
    to its cells, so that columns stay aligned in any font and no blank collapses. The
    blank lines under the last one drawn are left out."""
    screen = terminal.screen
    drawn = max((i + 1 for i, line in enumerate(terminal.text) if line), default=0)
    width = 2 * MARGIN + screen.columns * CELL_WIDTH
    height = 2 * MARGIN + drawn * CELL_HEIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:g} {height:g}" '
        f'width="{width:g}" height="{height:g}" role="img">',
        f"<title>{html.escape(title)}</title>",
        f'<rect width="100%" height="100%" rx="8" fill="{BACKGROUND}"/>',
        f'<g font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{FONT_SIZE}">',
    ]
    for row in range(drawn):
        top = MARGIN + row * CELL_HEIGHT
        for column, text, char in _runs(terminal, row):
            x, run_width = MARGIN + column * CELL_WIDTH, len(text) * CELL_WIDTH
            ink, paper = _colours(char)
            if paper != BACKGROUND:
                parts.append(
                    f'<rect x="{x:g}" y="{top:g}" width="{run_width:g}" '
                    f'height="{CELL_HEIGHT}" fill="{paper}"/>'
                )
            weight = ' font-weight="bold"' if char.bold else ""
            for word in re.finditer(r"\S+", text):  # blanks drawn as gaps: none collapses
                left, length = x + word.start() * CELL_WIDTH, len(word[0]) * CELL_WIDTH
                parts.append(
                    f'<text x="{left:g}" y="{top + CELL_HEIGHT * 0.75:g}" fill="{ink}"{weight} '
                    f'textLength="{length:g}" lengthAdjust="spacingAndGlyphs">'
                    f"{html.escape(word[0])}</text>"
                )
    parts += ["</g>", "</svg>", ""]
    return "\n".join(parts)


def _runs(terminal: Terminal, row: int) -> Iterator[tuple[int, str, Any]]:
    """(first column, text, a character of it) for each run of alike characters."""
    column = 0
    cells = terminal.cells(row)
    for _, group in itertools.groupby(cells, key=lambda char: char._replace(data="")):
        chars = list(group)
        yield column, "".join(char.data for char in chars), chars[0]
        column += len(chars)


def _colours(char: Any) -> tuple[str, str]:
    """(ink, paper): reverse video swaps them."""
    ink = PALETTE.get(char.fg, FOREGROUND)
    paper = PALETTE.get(char.bg, BACKGROUND)
    return (paper, ink) if char.reverse else (ink, paper)
