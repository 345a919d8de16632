"""The one command line: parser, help formatter and runner shared by every script and
`python -m` entry point (`libs.runtime.arguments`), and the entry points' one-line errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from libs.runtime.arguments import ArgumentParser, int_at_least, positive_int, run_command
from libs.runtime.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _help(parser: ArgumentParser) -> str:
    return " ".join(parser.format_help().split())


def test_help_shows_each_default_once_and_ranges_before_it():
    parser = ArgumentParser(prog="p")
    parser.add_argument("--config", default="/abs/config.yaml", help="the config (default: config.yaml here)")
    parser.add_argument("--mode", choices=("a", "b"), default="a", help="a (the default) or b")
    parser.add_argument("--seed", type=int, default=0, help="the seed")
    parser.add_argument("--flag", action="store_true", help="a switch")
    parser.add_argument("--count", type=positive_int, default=None, help="how many (default: per recipe)")
    parser.add_argument("--results-folder", default="out", help="see <save-folder>/<prefix>_log.csv and more "
                                                                  "words to wrap the line near the path")
    text = _help(parser)
    assert text.count("default: ") == 4 and "/abs/config.yaml" not in text
    assert "a (the default) or b --seed" in text  # no "(default: a)" after a help that names it
    assert "the seed (default: 0)" in text  # a default of 0 is shown
    assert "a switch --count" in text  # a switch's False is not
    assert "how many [an integer >= 1] (default: per recipe)" in text
    assert "<save-folder>/<prefix>_log.csv" in parser.format_help()  # not broken at a hyphen


def test_integer_types_name_the_flag_and_the_reason(capsys):
    parser = ArgumentParser(prog="p")
    parser.add_argument("--size", type=int_at_least(32, "frame_size", "too small for the network"))
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--size", "8"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "p: error: argument --size: must be at least 32, got 8: too small for the network (see --help)\n")
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "big"])
    assert "invalid frame_size value: 'big'" in capsys.readouterr().err


def test_run_command_reports_user_errors_in_one_line(capsys):
    def fails(exc: BaseException):
        def main() -> None:
            raise exc
        return main

    assert run_command(fails(UserError("bad value\nsecond line")), "p") == 2
    assert capsys.readouterr().err == "p: error: bad value; second line\n"
    assert run_command(fails(FileNotFoundError(2, "No such file or directory", "x.pth")), "p") == 2
    assert capsys.readouterr().err == "p: error: No such file or directory: x.pth\n"
    assert run_command(fails(KeyboardInterrupt()), "p") == 130
    assert capsys.readouterr().err == "p: interrupted\n"
    assert run_command(lambda: None, "p") == 0 and run_command(lambda: 3, "p") == 3
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_command(lambda: 1 / 0, "p")


def _one_line(argv: list[str]) -> str:
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2, (argv, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, (argv, done.stderr)
    return lines[0]


@pytest.mark.slow
def test_python_m_entry_points_report_bad_input_in_one_line(tmp_path):
    bad_log = tmp_path / "video_log.csv"
    bad_log.write_text("epoch,phase,loss\nseven,train,1\n")
    assert _one_line(["-m", "libs.engine.plot", str(bad_log)]) == (
        f"python -m libs.engine.plot: error: {bad_log}: not a training log as the trainer writes it "
        "(ValueError: invalid literal for int() with base 10: 'seven')")
    assert "no such file" in _one_line(["-m", "libs.networks.convert", str(tmp_path / "absent.pth"),
                                        str(tmp_path / "x.safetensors")])
    # export_onnx's and synthetic's errors: tests/test_onnx.py, tests/test_synthetic.py
