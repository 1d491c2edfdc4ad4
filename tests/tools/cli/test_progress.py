"""Progress bars with a total and an ETA on a terminal, nothing in a log (toolkit item 9)."""
import io
import json

from click.testing import CliRunner

from mynaemu.tools.harness import fuzz
from mynaemu.tools.cli import progress
from mynaemu.tools.cli import main
from mynaemu.tools.cli.progress import TerminalProgress


def test_nothing_is_drawn_off_a_terminal():
    stream = io.StringIO()
    with TerminalProgress(10, "work", stream=stream) as bar:
        bar.advance(3)
    assert not bar.enabled and stream.getvalue() == ""


def test_a_terminal_gets_position_total_and_percent():
    stream = io.StringIO()
    with TerminalProgress(10, "work", stream=stream, force=True) as bar:
        bar.set(4)
        bar.set(2)            # never goes backwards
        bar.set(99)           # clamped to the total
    out = stream.getvalue()
    assert "work" in out and "4/10" in out and "10/10" in out and "100%" in out and "\r" in out


def test_fuzz_prints_plain_lines_in_a_log_and_a_bar_on_a_terminal(capsys, monkeypatch):
    assert fuzz.main(["--apdus", "12000", "--personas", "adult", "--seed", "3"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    monkeypatch.setattr(progress, "on_terminal", lambda stream: True)
    assert fuzz.main(["--apdus", "12000", "--personas", "adult", "--seed", "3"]) == 0
    err = capsys.readouterr().err
    assert "fuzzing" in err and "/12000" in err and "%" in err


def _apply(names):
    for i in names:
        result = CliRunner().invoke(main, ["issue", "apply", "--name", f"架空\u3000{i}", "--birth", "1985-08-08",
                                           "--sex", "2", "--address", "東京都", "--at", "2026-05-01", "--json"])
        assert result.exit_code == 0, result.output


def test_batch_generate_bar_only_on_a_terminal(home, monkeypatch):
    _apply(['一'])
    result = CliRunner().invoke(main, ["issue", "generate", "--workers", "1", "--at", "2026-05-02", "--json"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)["generated"]) == 1
    assert "\r" not in result.stderr and "generating" not in result.stderr
    _apply(['二', '三'])
    monkeypatch.setattr(progress, "on_terminal", lambda stream: True)
    result = CliRunner().invoke(main, ["issue", "generate", "--workers", "1", "--at", "2026-05-02"])
    assert result.exit_code == 0
    assert "generating (1 worker)" in result.stderr and "2/2" in result.stderr
