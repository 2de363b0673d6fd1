"""The study handle: the only code that builds a study's paths, finds and opens it, and checks its data set."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest

from automel.engine.handle import StudyHandle
from automel.errors import ConfigError, StudyError
from tests.conftest import FIXTURE

PACKAGE = Path(__file__).resolve().parents[2] / "automel"


def test_every_path_of_a_study_lies_in_its_home(tmp_path: Path) -> None:
    handle = StudyHandle(tmp_path, "s")
    assert handle.database == tmp_path / "s.db" and handle.url == f"sqlite:///{(tmp_path / 's.db').resolve()}"
    assert (handle.folder, handle.artifacts, handle.logs, handle.best, handle.export_lock) == (
        tmp_path / "s", tmp_path / "s" / "artifacts", tmp_path / "s" / "logs", tmp_path / "s" / "best",
        tmp_path / "s" / ".export.lock")
    assert StudyHandle(tmp_path, "s", "journal:/x/j.log").storage_file == Path("/x/j.log")
    for name in ("../x", "/tmp/x", ".", ""):
        with pytest.raises(ConfigError, match="invalid study name"):
            StudyHandle(tmp_path, name)


def test_find_takes_the_only_study_or_names_them(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="no studies; pass `study`"):
        StudyHandle.find(tmp_path, None)
    for name in ("b", "a"):
        optuna.create_study(study_name=name, storage=StudyHandle(tmp_path, name).url)
    assert StudyHandle.names_in(tmp_path) == ["a", "b"]
    with pytest.raises(StudyError, match=r"several studies; pass `study` \(one of a, b\)"):
        StudyHandle.find(tmp_path, None)
    (tmp_path / "b.db").unlink()
    assert StudyHandle.find(tmp_path, None).load().study_name == "a"


def test_loading_never_creates_a_study_or_its_file(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="no study 'nope' in"):
        StudyHandle(tmp_path, "nope").load()
    elsewhere = tmp_path / "other.db"
    with pytest.raises(StudyError, match="does not exist: no study 'nope' there"):
        StudyHandle(tmp_path, "nope", f"sqlite:///{elsewhere}").load()
    optuna.create_study(study_name="real", storage=f"sqlite:///{elsewhere}")
    with pytest.raises(StudyError, match="has no study 'nope'"):
        StudyHandle(tmp_path, "nope", f"sqlite:///{elsewhere}").load()
    assert not [p.name for p in tmp_path.iterdir() if not p.name.startswith("other.db")]  # (its -wal, -shm)


def test_the_data_set_must_be_the_studys(old_study: tuple[StudyHandle, optuna.Study], old_data: Path,
                                         tmp_path: Path) -> None:
    handle, study = old_study
    recorded = Path(study.user_attrs["dataset"]["root"])  # /tmp/oldfx/data, where the fixture was made
    if not recorded.exists():
        with pytest.raises(StudyError, match="is not on this machine; pass `data` with a copy of it"):
            handle.workspace(study)
    assert handle.workspace(study, old_data).store.num_classes == 4
    from automel.data.synth import SynthSpec, generate_corpus

    other = generate_corpus(tmp_path / "other", SynthSpec(speakers=4, utterances=8, seed=1, test_per_speaker=2), jobs=1)
    with pytest.raises(StudyError, match="is not study 'old''s data set, or has changed since it ran"):
        handle.workspace(study, other)


@pytest.mark.parametrize("pattern", [r'/ "best"', r'\.db"', r'"\*\.db"', r'/ "artifacts"', r'/ "logs"'])
def test_no_other_module_builds_a_studys_paths(pattern: str) -> None:
    builders = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                if path.name != "handle.py" and re.search(pattern, path.read_text())]
    assert not builders, f"{pattern} is built outside automel/engine/handle.py in {builders}"


def test_the_fixture_is_a_study_written_before_the_handle() -> None:
    assert (FIXTURE / "old.db").is_file() and (FIXTURE / "old" / "best" / "export.json").is_file()
