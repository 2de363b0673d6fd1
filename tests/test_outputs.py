""":mod:`automel.outputs`: the output-path rule and the atomic writes every command uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from automel.errors import ConfigError
from automel.outputs import atomic_files, check_output_file, check_output_folder


def test_an_ordinary_new_or_existing_file_passes(tmp_path: Path) -> None:
    assert check_output_file(tmp_path / "new.csv", "--out") == tmp_path / "new.csv"
    (tmp_path / "old.csv").write_text("x")
    assert check_output_file(tmp_path / "old.csv", "--out", inputs=[tmp_path / "other"]) == tmp_path / "old.csv"


@pytest.mark.parametrize(("make", "words"), [
    (lambda t: (t / "in.wav", [t / "in.wav"], []), "is one of this command's inputs"),
    (lambda t: (t / "link", [t / "in.wav"], []), "the same file as"),  # a symbolic link to an input
    (lambda t: (t / "model" / "sub" / "x.csv", [], [("the model folder", t / "model")]), "lies inside the model"),
    (lambda t: (t / "via" / "x.csv", [], [("the data set", t / "model")]), "lies inside the data set"),  # linked in
    (lambda t: (t / "model", [], [("the model folder", t / "model")]), "is the model folder"),
    (lambda t: (t / "model", [], []), "is a folder"),
    (lambda t: (t / "in.wav" / "x.csv", [], []), "is a file, not a folder"),
    (lambda t: (t / "no" / "such" / "x.csv", [], []), "does not exist"),
])
def test_each_refusal_is_one_config_error_naming_the_path(tmp_path: Path, make: object, words: str) -> None:
    (tmp_path / "in.wav").write_bytes(b"RIFF")
    (tmp_path / "link").symlink_to(tmp_path / "in.wav")
    (tmp_path / "model" / "sub").mkdir(parents=True)
    (tmp_path / "via").symlink_to(tmp_path / "model")
    out, inputs, inside = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=words) as caught:
        check_output_file(out, "--out", inputs=inputs, inside=inside)
    assert str(caught.value).startswith(f"--out {out}: ") and "\n" not in str(caught.value)


def test_a_folder_output_may_be_new_but_not_a_file_nor_under_one(tmp_path: Path) -> None:
    assert check_output_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    (tmp_path / "f").write_text("x")
    for bad, words in ((tmp_path / "f", "is a file, not a folder"), (tmp_path / "f" / "b", "is a file, not a folder")):
        with pytest.raises(ConfigError, match=words):
            check_output_folder(bad, "--out")


def test_atomic_files_renames_all_or_puts_every_earlier_file_back(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "e.npy", tmp_path / "e.ids.txt"
    first.write_text("old vectors")
    real = os.replace
    calls: list[str] = []

    def failing(src: object, dst: object) -> None:
        calls.append(str(dst))
        if str(dst) == str(second):
            raise OSError(5, "Input/output error")
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(ConfigError, match=r"e\.ids\.txt: cannot write"), atomic_files([first, second]) as temps:
        for tmp in temps:
            tmp.write_text("new")
    assert first.read_text() == "old vectors" and not second.exists()  # the first put back, no stray ids file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npy"]  # no temporary or kept copy left
    monkeypatch.setattr(os, "replace", real)
    with atomic_files([first, second]) as temps:
        for tmp in temps:
            tmp.write_text("new")
    assert first.read_text() == second.read_text() == "new"


def test_write_scores_refuses_the_trial_list_it_scores(tmp_path: Path) -> None:
    from automel.verification import read_trials, write_scores

    (tmp_path / "a.wav").write_bytes(b"RIFF")
    listed = tmp_path / "t.txt"
    listed.write_text("a.wav a.wav\n", encoding="utf-8")
    trials = read_trials(listed)
    with pytest.raises(ConfigError, match="is one of this command's inputs"):
        write_scores(listed, trials, [0.5])
    assert listed.read_text(encoding="utf-8") == "a.wav a.wav\n"
