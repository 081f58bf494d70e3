"""Progress in logs: whole lines, no redraws, one line per iteration of a fine-tuning loop."""

import io

from vla_razor.progress import LogLines, is_terminal, progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_plain_lines_and_a_terminal_gets_a_bar(monkeypatch):
    monkeypatch.delenv("VLA_RAZOR_PROGRESS", raising=False)
    log = io.StringIO()
    outer = progress(total=3, desc="ppo PullCube", file=log)
    assert isinstance(outer, LogLines)
    for i in range(3):
        inner = progress(total=4, desc="eval PushCube", leave=False, file=log)
        for _ in range(4):
            inner.update(1)
        inner.close()
        outer.update(1)
        outer.set_postfix(forward=f"{0.1 * i:.3g}")
    outer.close()
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text  # no carriage returns, no cursor moves
    lines = text.splitlines()
    assert all(line.strip() for line in lines)  # no blank lines either
    # the start, one line per iteration with its postfix, each transient bar once at its end
    assert [line for line in lines if line.startswith("ppo")][1:] == [
        line for line in lines if "forward=" in line
    ]
    assert sum("forward=" in line for line in lines) == 3
    assert sum(line.startswith("eval PushCube: 4/4") for line in lines) == 3
    assert lines[-1].startswith("ppo PullCube: 3/3")
    assert not isinstance(progress(total=1, file=_Tty()), LogLines)


def test_the_environment_forces_a_style(monkeypatch):
    monkeypatch.setenv("VLA_RAZOR_PROGRESS", "bars")
    assert is_terminal(io.StringIO())
    monkeypatch.setenv("VLA_RAZOR_PROGRESS", "lines")
    assert not is_terminal(_Tty())
