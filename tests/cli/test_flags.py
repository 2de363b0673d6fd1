"""Library errors name the Python API's parameters (`time_limit`); the CLI prints the same error with its flags
(``--time-limit``): automel.cli._flags, issue 23."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

import automel
from automel.cli._flags import FLAGS, as_flags, flag_note
from automel.errors import ConfigError
from tests.conftest import run


def test_as_flags_maps_the_parameters_it_knows_and_leaves_other_backticked_text() -> None:
    text = "give it a longer `time_limit` or a smaller `steps_per_trial`; `study` NAME, `data_root` DIR"
    assert as_flags(text) == "give it a longer --time-limit or a smaller --steps-per-trial; --study NAME, --data DIR"
    untouched = "run `automel refit --study s`, see `test`, `formats[0]`, `not_a_parameter` and time_limit"
    assert as_flags(untouched) == untouched
    assert as_flags(as_flags(text)) == as_flags(text)  # a line already in flags stays as it is


def test_every_flag_is_a_flag_and_every_name_is_a_parameter() -> None:
    for name, flag in FLAGS.items():
        assert name.isidentifier() and name == name.lower(), name
        assert flag.startswith("--") and "_" not in flag and " " not in flag, flag


def test_flag_note_passes_each_progress_line_through_the_mapping() -> None:
    lines: list[str] = []
    note = flag_note(lines.append)
    note("a longer `time_limit` or fewer `workers` (2 now)")
    assert lines == ["a longer --time-limit or fewer --workers (2 now)"]


def test_the_python_api_names_the_parameter(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(ConfigError) as caught:
        automel.search(tmp_path / "data", time_limit=5, home=home)
    message = str(caught.value)
    assert message.startswith("`time_limit` 5s is shorter than the shortest useful run"), message
    assert "--" not in message
    with pytest.raises(ConfigError) as caught:
        automel.search(tmp_path / "data", quality="superb", home=home)
    assert str(caught.value).startswith("`quality` 'superb' is unknown") and "--" not in str(caught.value)
    assert not home.exists() or not any(home.rglob("*.db"))


def test_the_cli_names_the_flag_for_the_same_mistake(cli: CliRunner, tmp_path: Path) -> None:
    code, _, stderr = run(cli, "search", "--data", tmp_path / "data", "--time-limit", "5s",
                          "--home", tmp_path / "home")
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert lines[0].startswith("error: --time-limit 5s is shorter than the shortest useful run"), stderr
    assert "`" not in lines[0]


def test_the_cli_names_the_flag_in_the_librarys_notes() -> None:
    """A library note (the ``automel`` logger) reaches stderr with flags, as errors do."""
    from automel.cli._common import _NoteHandler

    handler = _NoteHandler(logging.INFO)
    record = logging.LogRecord("automel.test", logging.INFO, __file__, 0, "`noise`: skipped x.wav", None, None)
    with pytest.MonkeyPatch.context() as patch:
        printed: list[str] = []
        patch.setattr("automel.cli._common.err_console.print", lambda text, **_: printed.append(text))
        handler.emit(record)
    assert printed == ["note: --noise: skipped x.wav"]
