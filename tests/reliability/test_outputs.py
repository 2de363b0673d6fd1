"""What commands write: never over what they read, checked before any work, never a model lost (issue 22).

Causes 1, 2, 3, 9 and 10 of issue 22 and the report's stderr noise, each driven through the CLI as a user
would type it: the one output-path rule (:mod:`automel.outputs`) for ``embed``, ``predict``, ``verify``,
``export``, ``report`` and ``train``; ``export --format`` keeping a refit or ensemble export; the time limit's
upper bound and the workers' cap; a killed report's leftover; a report's PNGs with names no font or axis fits.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import HW4_SAMPLE, need, run


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of hw4-sample: a regression must never write into the shared one."""
    return Path(shutil.copytree(need(HW4_SAMPLE), tmp_path_factory.mktemp("data") / "hw4"))


def write_wav(path: Path, seconds: float = 0.5, rate: int = 16_000) -> Path:
    samples = (np.random.default_rng(0).standard_normal(int(seconds * rate)) * 3000).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(samples.tobytes())
    return path


def tree(*roots: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``roots`` with its bytes (None for a folder): what must not change."""
    found: dict[str, bytes | None] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            found[str(path)] = None if path.is_dir() else path.read_bytes()
    return found


def one_line_error(code: int, stderr: str, *names: object) -> str:
    """The single ``error:`` line on stderr, exit 2, naming each of ``names``; no traceback."""
    assert "Traceback" not in stderr, stderr
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model for inference, building a data set's cache or tracing an export fails the test: the
    output must be refused before any of it."""
    import automel.data.store
    import automel.exporting
    import automel.inference

    def work(*args: object, **kwargs: object) -> None:
        raise AssertionError("work began before the output path was checked")

    monkeypatch.setattr(automel.inference.SpeakerInference, "load", work)
    monkeypatch.setattr(automel.data.store, "open_store", work)
    monkeypatch.setattr(automel.exporting, "export_model", work)


@dataclass
class Place:
    """The files of one case: the model, a copy of hw4-sample, a WAV clip, a trial list naming it."""

    model: Path
    data: Path
    tmp: Path

    @property
    def clip(self) -> Path:
        return self.tmp / "victim.wav"

    @property
    def trials(self) -> Path:
        return self.tmp / "t.txt"


@pytest.fixture
def place(model: Path, dataset: Path, tmp_path: Path) -> Place:
    write_wav(tmp_path / "victim.wav")
    (tmp_path / "t.txt").write_text("1 victim.wav victim.wav\n0 victim.wav victim.wav\n", encoding="utf-8")
    return Place(model, dataset, tmp_path)


Case = Callable[[Place], tuple[list[object], Path, str]]

# --- cause 2: an output that is an input, or lies in a folder the command reads -------------------------------

INPUT_CASES: dict[str, Case] = {
    "embed_onto_the_weights": lambda p: (["embed", p.model, p.clip, "--out", p.model / "model.safetensors"],
                                         p.model / "model.safetensors", "lies inside the model folder"),
    "embed_into_the_model_folder": lambda p: (["embed", p.model, p.clip, "--out", p.model / "emb.npy"],
                                              p.model / "emb.npy", "lies inside the model folder"),
    "embed_a_data_set_into_it": lambda p: (["embed", p.model, p.data, "--out", p.data / "emb.npy"],
                                           p.data / "emb.npy", "lies inside the data set"),
    "predict_onto_the_config": lambda p: (["predict", p.model, p.clip, "--out", p.model / "config.json"],
                                          p.model / "config.json", "lies inside the model folder"),
    "predict_onto_its_input": lambda p: (["predict", p.model, p.clip, "--out", p.clip], p.clip,
                                         "is one of this command's inputs"),
    "predict_onto_a_link_to_its_input": lambda p: (["predict", p.model, p.clip, "--out", _link(p, "link.csv")],
                                                   p.tmp / "link.csv", "is one of this command's inputs"),
    "predict_onto_a_hard_link_to_its_input": lambda p: (
        ["predict", p.model, p.clip, "--out", _link(p, "hard.csv", hard=True)], p.tmp / "hard.csv",
        "the same file as"),
    "predict_onto_the_metadata": lambda p: (["predict", p.model, "--data", p.data, "--out", p.data / "metadata.json"],
                                            p.data / "metadata.json", "lies inside the data set"),
    "predict_an_answer_key_into_the_data_set": lambda p: (
        ["predict", p.model, "--data", p.data, "--out", p.data / "answers.csv"], p.data / "answers.csv",
        "lies inside the data set"),
    "predict_onto_the_model_folder_itself": lambda p: (["predict", p.model, p.clip, "--out", p.model], p.model,
                                                       "is the model folder"),
    "verify_onto_its_trial_list": lambda p: (["verify", p.model, p.trials, "--scores", p.trials], p.trials,
                                             "is one of this command's inputs"),
    "verify_onto_a_file_it_lists": lambda p: (["verify", p.model, p.trials, "--scores", p.clip], p.clip,
                                              "is one of this command's inputs"),
    "verify_into_the_model_folder": lambda p: (["verify", p.model, p.trials, "--scores", p.model / "s.txt"],
                                               p.model / "s.txt", "lies inside the model folder"),
}


def _link(place: Place, name: str, hard: bool = False) -> Path:
    link = place.tmp / name
    if hard:
        os.link(place.clip, link)
    else:
        link.symlink_to(place.clip)
    return link


@pytest.mark.parametrize("case", INPUT_CASES.values(), ids=INPUT_CASES.keys())
def test_an_output_that_is_an_input_or_lies_in_what_the_command_reads_is_refused(
        case: Case, place: Place, shared_home: Path, no_work: None) -> None:
    args, out, words = case(place)
    before = tree(place.model, place.data, place.tmp)
    code, _, stderr = run(CliRunner(), *args, "--device", "cpu", *(["--home", shared_home] if "--data" in args else []))
    one_line_error(code, stderr, out, words)
    assert tree(place.model, place.data, place.tmp) == before  # nothing written, replaced or left beside


# --- cause 3: a folder, a device, or a file in the way: refused before any work, nothing left ----------------

def _folder(p: Place, name: str) -> Path:
    (p.tmp / name).mkdir()
    return p.tmp / name


def _file(p: Place, name: str) -> Path:
    (p.tmp / name).write_text("mine\n", encoding="utf-8")
    return p.tmp / name


def _model_copy(p: Place) -> Path:
    return Path(shutil.copytree(p.model, p.tmp / "model"))


PLACE_CASES: dict[str, Case] = {
    "embed_onto_a_folder": lambda p: (["embed", p.model, p.clip, "--out", _folder(p, "emb.npy")], p.tmp / "emb.npy",
                                      "is a folder"),
    "embed_under_a_file": lambda p: (["embed", p.model, p.clip, "--out", _file(p, "afile") / "emb.npy"],
                                     p.tmp / "afile", "is a file, not a folder"),
    "embed_whose_ids_file_is_a_folder": lambda p: (["embed", p.model, p.clip, "--out", p.tmp / "e.npy"],
                                                   _folder(p, "e.ids.txt"), "is a folder"),
    "predict_files_onto_a_folder": lambda p: (["predict", p.model, p.clip, "--out", _folder(p, "out")], p.tmp / "out",
                                              "is a folder"),
    "predict_into_a_missing_folder": lambda p: (["predict", p.model, p.clip, "--out", p.tmp / "no" / "o.csv"],
                                                p.tmp / "no", "does not exist"),
    "predict_onto_a_device": lambda p: (["predict", p.model, p.clip, "--out", "/dev/null"], Path("/dev/null"),
                                        "is not a regular file"),
    "predict_data_set_onto_a_folder": lambda p: (["predict", p.model, "--data", p.data, "--out", _folder(p, "o")],
                                                 p.tmp / "o", "is a folder"),
    "verify_scores_onto_a_folder": lambda p: (["verify", p.model, p.trials, "--scores", _folder(p, "s")], p.tmp / "s",
                                              "is a folder"),
    "verify_scores_under_a_file": lambda p: (["verify", p.model, p.trials, "--scores", _file(p, "f") / "s.txt"],
                                             p.tmp / "f", "is a file, not a folder"),
    "export_model_onnx_is_a_folder": lambda p: (
        ["export", "--model", _model_copy(p), "--format", "torchscript"], _folder(p, "model/model.ts"), "is a folder"),
    "export_model_out_is_a_file": lambda p: (["export", "--model", p.model, "--format", "torchscript", "--out",
                                              _file(p, "deploy")], p.tmp / "deploy", "is a file, not a folder"),
    "train_out_is_a_file": lambda p: (["train", "--steps", 2, "--data", p.data, "--out", _file(p, "run")],
                                      p.tmp / "run", "is a file, not a folder"),
}


@pytest.mark.parametrize("case", PLACE_CASES.values(), ids=PLACE_CASES.keys())
def test_an_output_in_the_wrong_place_is_one_line_before_any_work_and_leaves_nothing(
        case: Case, place: Place, shared_home: Path, no_work: None) -> None:
    args, named, words = case(place)
    before = tree(place.model, place.tmp)
    device = [] if args[0] == "export" else ["--device", "cpu"]
    home = ["--home", shared_home] if args[0] in ("train", "predict") and "--data" in args else []
    code, _, stderr = run(CliRunner(), *args, *device, *home)
    one_line_error(code, stderr, named, words)
    assert tree(place.model, place.tmp) == before  # no stray .ids.txt, no temporary file, nothing replaced


def test_the_rule_lets_ordinary_outputs_through_and_writes_both_embedding_files(model: Path, tmp_path: Path) -> None:
    features = sorted(need(HW4_SAMPLE).glob("*.pt"))[:3]
    code, _, stderr = run(CliRunner(), "embed", model, *features, "--out", tmp_path / "e.npy", "--device", "cpu")
    assert code == 0, stderr
    assert np.load(tmp_path / "e.npy").shape[0] == 3
    assert (tmp_path / "e.ids.txt").read_text(encoding="utf-8").splitlines() == [str(f) for f in features]
    code, _, stderr = run(CliRunner(), "predict", model, *features, "--out", tmp_path / "p.csv", "--device", "cpu")
    assert code == 0, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.ids.txt", "e.npy", "p.csv"]


# --- cause 1: adding a format never changes the model -------------------------------------------------------


@pytest.fixture(scope="module")
def refit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real study whose export is a refit, on hw4-sample with speakers named in Chinese, at length
    and with mathtext (``$\\frac$``): two 12-step trials, then ``automel refit`` of 4 steps."""
    data = Path(shutil.copytree(need(HW4_SAMPLE), tmp_path_factory.mktemp("data") / "odd"))
    meta = json.loads((data / "metadata.json").read_text(encoding="utf-8"))
    spelled = ["说话人{}", "a-very-long-speaker-name-that-a-figure-would-clip-{}", "cost$\\frac${}"]
    rename = {s: spelled[i % 3].format(i) for i, s in enumerate(sorted(meta["speakers"]))}
    meta["speakers"] = {rename[s]: items for s, items in meta["speakers"].items()}
    (data / "metadata.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    names = sorted(meta["speakers"])
    (data / "mapping.json").write_text(json.dumps({"speaker2id": {s: i for i, s in enumerate(names)},
                                                   "id2speaker": {str(i): s for i, s in enumerate(names)}},
                                                  ensure_ascii=False), encoding="utf-8")
    home = tmp_path_factory.mktemp("refit-home")
    code, _, stderr = run(CliRunner(), "search", "--data", data, "--study", "s", "--home", home, "--trials", 2,
                          "--steps-per-trial", 12, "--no-refit", "--no-portfolio", "--encoders", "transformer",
                          "--poolings", "mean", "--heads", "softmax", "--pruner", "none", "--device", "cpu")
    assert code == 0, stderr
    code, _, stderr = run(CliRunner(), "refit", "--study", "s", "--home", home, "--steps", 4, "--quality", "fast",
                          "--device", "cpu")
    assert code == 0, stderr
    assert json.loads((home / "s" / "best" / "export.json").read_text())["kind"] == "refit"
    return home


@pytest.mark.parametrize("kind", ["refit", "ensemble"])
def test_adding_a_format_keeps_a_refit_or_ensemble_export_and_only_an_explicit_trial_replaces_it(
        refit_home: Path, isolated_home: Path, kind: str) -> None:
    shutil.copytree(refit_home, isolated_home, dirs_exist_ok=True)
    best = isolated_home / "s" / "best"
    info = json.loads((best / "export.json").read_text())
    if kind == "ensemble":  # what the rule reads is export.json's kind; an ensemble is retrained work as well
        info.update(kind="ensemble", members=[{"trial": 0}, {"trial": 1}])
        (best / "export.json").write_text(json.dumps(info), encoding="utf-8")
    kept = {name: (best / name).read_bytes() for name in ("model.safetensors", "config.json", "export.json")}
    data = Path(json.loads((best / "config.json").read_text())["dataset"]["root"])
    code, _, stderr = run(CliRunner(), "export", "--study", "s", "--out", data / "exported")  # into what it reads
    one_line_error(code, stderr, data / "exported", "lies inside the data set")
    assert not (data / "exported").exists()

    code, stdout, stderr = run(CliRunner(), "export", "--study", "s", "--format", "torchscript")
    assert code == 0, stderr
    assert f"added model.ts to the {kind} export" in stdout and "its model is unchanged" in stdout
    assert {name: (best / name).read_bytes() for name in kept} == kept and (best / "model.ts").is_file()

    code, stdout, stderr = run(CliRunner(), "export", "--study", "s")  # the best trial again: nothing to do
    assert code == 0, stderr
    assert "nothing to do" in stdout and "--trial N" in stdout
    assert {name: (best / name).read_bytes() for name in kept} == kept

    other = 1 - info["trial"]
    code, stdout, stderr = run(CliRunner(), "export", "--study", "s", "--trial", other)
    assert code == 0, stderr
    assert f"replaced the {kind} export of trial" in stdout and f"with trial {other}" in stdout
    assert json.loads((best / "export.json").read_text())["kind"] == "trial"


# --- the report: stderr without noise, names that fit, a killed report's leftover cleared -------------------


def test_a_report_with_names_no_font_or_axis_fits_keeps_stderr_clean(refit_home: Path, tmp_path: Path) -> None:
    from automel.report.common import PNG_LABEL_CHARS, png_label

    code, _, stderr = run(CliRunner(), "report", "--study", "s", "--home", refit_home, "--out",
                               tmp_path / "r.html", "--device", "cpu")
    assert code == 0, stderr
    assert "Warning" not in stderr and "Glyph" not in stderr and "Traceback" not in stderr, stderr
    assert (tmp_path / "r-speakers.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "r-confusion.png").read_bytes()[:4] == b"\x89PNG"
    long = "a-very-long-speaker-name-that-a-figure-would-clip-1"
    assert len(png_label(long)) == PNG_LABEL_CHARS and png_label(long).endswith("…")
    assert png_label("cost$\\frac$2") == "cost\\$\\frac\\$2"  # literal, not mathtext (which raised)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def test_the_leftover_of_a_killed_report_is_cleared_by_the_next(isolated_home: Path, tmp_path: Path) -> None:
    from tests.test_report import make_study

    make_study(isolated_home, "handmade")
    host = socket.gethostname()
    dead = tmp_path / f".r.html.{_dead_pid()}@{host}.0badf00d"  # as a report killed with SIGKILL leaves it
    dead.mkdir(mode=0o700)
    (dead / "r-history.png").write_bytes(b"\x89PNG half")
    alive = tmp_path / f".r.html.{os.getpid()}@{host}.5afe5afe"  # a report still running: spared
    alive.mkdir()

    code, _, stderr = run(CliRunner(), "report", "--study", "handmade", "--out", tmp_path / "r.html",
                          "--device", "cpu")

    assert code == 0, stderr
    assert not dead.exists() and alive.is_dir()
    assert (tmp_path / "r.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [alive.name]


REPORT_CASES: dict[str, Callable[[Path, Path], tuple[Path, str]]] = {
    "onto_the_study_database": lambda home, tmp: (home / "handmade.db", "is one of this command's inputs"),
    "into_the_study_folder": lambda home, tmp: (_mkdir(home / "handmade") / "r.html",
                                                "lies inside the folder of study"),
    "beside_a_png_that_is_a_folder": lambda home, tmp: (_png_folder(tmp), "is a folder"),
}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _png_folder(tmp: Path) -> Path:
    (tmp / "r-history.png").mkdir()
    return tmp / "r.html"


@pytest.mark.parametrize("case", REPORT_CASES.values(), ids=REPORT_CASES.keys())
def test_a_report_out_that_would_overwrite_what_it_reads_is_refused(
        case: Callable[[Path, Path], tuple[Path, str]], isolated_home: Path, tmp_path: Path) -> None:
    from tests.test_report import make_study

    make_study(isolated_home, "handmade")
    out, words = case(isolated_home, tmp_path)
    before = tree(tmp_path)
    code, _, stderr = run(CliRunner(), "report", "--study", "handmade", "--out", out, "--device", "cpu")
    one_line_error(code, stderr, out, words)
    assert tree(tmp_path) == before
    assert (isolated_home / "handmade.db").read_bytes()[:16] == b"SQLite format 3\x00"  # SQLite's, not a page
    assert not [p for p in isolated_home.rglob("*") if p.suffix in (".html", ".png") or p.name.startswith(".")]


# --- cause 9: the time limit's upper bound, and no more workers than cores ---------------------------------


@pytest.mark.parametrize("limit", ["999999999999999999999", "1e21", "745h"])
def test_a_time_limit_beyond_30_days_is_one_line(limit: str, isolated_home: Path) -> None:
    code, stdout, stderr = run(CliRunner(), "search", "--data", need(HW4_SAMPLE), "--time-limit", limit,
                               "--device", "cpu")
    one_line_error(code, stderr, "--time-limit", "30 days")
    assert "e+21" not in stdout + stderr
    assert not list(isolated_home.iterdir())


def test_the_library_takes_a_huge_time_limit_as_one_error(isolated_home: Path) -> None:
    import automel
    from automel.errors import ConfigError

    with pytest.raises(ConfigError, match="30 days"):
        automel.search(need(HW4_SAMPLE), time_limit=1e21, device="cpu")
    assert not list(isolated_home.iterdir())


def test_more_workers_than_cores_are_capped_at_the_cores_and_say_so(isolated_home: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import automel.engine.parallel as parallel
    from automel.errors import StudyError

    started: list[int] = []

    def launch(opened: object, home: Path, options: object, workers: int, data_root: Path) -> list[object]:
        started.append(workers)
        raise StudyError("stopped by the test once the workers were counted")

    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    monkeypatch.setattr(parallel, "launch_workers", launch)
    code, _, stderr = run(CliRunner(), "search", "--data", need(HW4_SAMPLE), "--workers", 6, "--time-limit", "45s",
                          "--device", "cpu", "--encoders", "transformer", "--poolings", "mean", "--heads", "softmax")
    assert started == [2]
    assert "--workers 6: this machine gives 2 CPU cores; running 2 workers" in stderr, stderr
    assert code == 2 and "stopped by the test" in stderr
