"""Progress reporting: redrawn bars on a terminal, whole lines in a log.

On a terminal every long loop shows a tqdm bar. When the output is not a terminal (CI, ``nohup``, a
sweep's log file), redrawn bars fill the log with carriage returns and cursor moves (``ESC[A``), so
:func:`progress` returns :class:`LogLines` instead: the same tqdm object, which writes one plain line
per refresh, at most every ``VLA_RAZOR_LOG_INTERVAL`` seconds (default 30) and whenever its postfix
is set (once per iteration of a fine-tuning run), plus one line when it closes.

``VLA_RAZOR_PROGRESS=bars`` or ``=lines`` forces one style.
"""

from __future__ import annotations

import os
import sys

from tqdm import tqdm

__all__ = ["LogLines", "is_terminal", "progress"]


def is_terminal(stream=None) -> bool:
    """Whether progress goes to a terminal (``VLA_RAZOR_PROGRESS`` overrides)."""
    forced = os.environ.get("VLA_RAZOR_PROGRESS", "")
    if forced in ("bars", "lines"):
        return forced == "bars"
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("VLA_RAZOR_LOG_INTERVAL", "30")))
    except ValueError:
        return 30.0


class _LineStream:
    """Passes whole lines through; drops the bare carriage returns and newlines tqdm writes around a
    redraw."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        if text.strip("\r\n"):
            self.stream.write(text)

    def flush(self) -> None:
        getattr(self.stream, "flush", lambda: None)()


class LogLines(tqdm):
    """A tqdm bar for logs: every refresh is one plain line, never a redraw.

    A bar with ``leave=False`` (a stage inside a larger one, such as one task's evaluation) writes only
    its closing line.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("mininterval", _interval())
        kwargs.setdefault("maxinterval", max(kwargs["mininterval"], 10.0))
        kwargs["file"] = _LineStream(kwargs.get("file") or sys.stderr)
        kwargs["dynamic_ncols"] = False
        kwargs["position"] = None
        self._last_key = None
        super().__init__(*args, **kwargs)

    def _line(self) -> str:
        # The bar graphics mean nothing in a log: "desc: n/total [elapsed<remaining, rate, postfix]".
        fmt = dict(self.format_dict)
        fmt["bar_format"] = (
            "{desc}: {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
            if fmt.get("total")
            else "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"
        )
        return self.format_meter(**fmt).strip()

    def display(self, msg=None, pos=None):
        closing = msg == "" or pos == 0  # tqdm.close(): clears a transient bar, redraws a kept one
        if not closing and not self.leave:
            return True  # a transient bar stays quiet until it closes
        line = self._line() if msg in (None, "") else msg.strip()
        key = (self.n, str(self.postfix), msg)  # the rate alone changing is no news
        if line and key != self._last_key:
            self._last_key = key
            self.fp.write(line + "\n")
            self.fp.flush()
        return True


def progress(*args, **kwargs) -> tqdm:
    """A tqdm bar on a terminal, :class:`LogLines` otherwise (same arguments as ``tqdm``)."""
    cls = tqdm if is_terminal(kwargs.get("file")) else LogLines
    return cls(*args, **kwargs)
