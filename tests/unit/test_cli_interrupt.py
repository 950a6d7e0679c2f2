"""Ctrl-C (or SIGTERM) before a command has set up its own handling ends it as every interrupt
does: exit 130 (143) and one line, not click's 'Aborted!' and exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from controller import cli
from controller.cli import main


@pytest.mark.parametrize(("error", "code", "said"), [(KeyboardInterrupt, 130, "greenwave: interrupted"),
                                                      (cli.Terminated, 143, "greenwave: terminated")])
def test_an_interrupt_before_the_run_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            error: type[BaseException], code: int, said: str) -> None:
    # (the run's first steps: Ctrl-C 0.4 s after starting a run said "Aborted!", exit 1)
    def interrupted(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(cli, "Console", interrupted)
    result = CliRunner().invoke(main, ["run", "x.toml", "--out", str(tmp_path / "o")])
    assert result.exit_code == code and said in result.output and "Aborted" not in result.output, result.output
    assert not (tmp_path / "o").exists()
