"""Issue 13, "what ``data check`` catches, every command must catch": bad data sets through the CLI.

Every damaged data set goes through ``data check``, ``train``, ``search`` and ``predict``; each must end with
exit 2 and one error line naming the file, never a traceback, and write nothing (no run directory, no study,
no submission, no feature cache). The data sets are tiny (a few real utterances of ../shared/data/hw4-sample,
written with :class:`DatasetWriter`) so that every command fails or finishes in seconds.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import typer.main
import typer.testing
from typer.testing import CliRunner

from automel.cli import app
from automel.data.layout import DatasetWriter
from automel.data.store import open_store
from automel.errors import DataError
from tests.conftest import HW4_SAMPLE, need, run

SPEAKERS = ("id10001", "id10002", "id10003")
PER_SPEAKER = 3  # two training utterances and one test utterance each
TRAIN = ["--steps", 2, "--valid-every", 1, "--device", "cpu"]
SEARCH = ["--trials", 1, "--steps-per-trial", 10, "--encoders", "transformer", "--poolings", "mean", "--heads",
          "softmax", "--pruner", "none", "--no-portfolio", "--device", "cpu", "--no-refit", "--quality", "fast"]


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def save_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")


def sample_utterance(speaker: str, k: int) -> Path:
    return HW4_SAMPLE / load_json(HW4_SAMPLE / "metadata.json")["speakers"][speaker][k]["feature_path"]


def write_tiny(out: Path) -> Path:
    """Three speakers of the sample, two training and one test utterance each (the real tensors)."""
    need(HW4_SAMPLE)
    with DatasetWriter(out, 40, {"kind": "test"}) as writer:
        for speaker in SPEAKERS:
            for k in range(PER_SPEAKER):
                tensor = torch.load(sample_utterance(speaker, k), weights_only=True)
                writer.add(speaker, f"u{k}", tensor.numpy(), test=k == PER_SPEAKER - 1)
        return writer.commit()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture(scope="module")
def trained(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained (two steps) on the intact tiny data set, for ``predict``."""
    base = tmp_path_factory.mktemp("trained")
    code, _, err = run(CliRunner(), "train", "--data", tiny, *TRAIN, "--out", base / "run", "--home", base / "home")
    assert code == 0, err
    return base / "run"


@pytest.fixture
def data(tiny: Path, tmp_path: Path) -> Path:
    """A copy of the tiny data set to damage."""
    return Path(shutil.copytree(tiny, tmp_path / "data"))


def train_names(root: Path) -> list[str]:
    return [u["feature_path"] for utts in load_json(root / "metadata.json")["speakers"].values() for u in utts]


def held_out_names(root: Path) -> list[str]:
    return [u["feature_path"] for u in load_json(root / "testdata.json")["utterances"]]


# --- the damage: each returns the file the error must name and words it must contain ---------------------

Damage = Callable[[Path], tuple[str, tuple[str, ...]]]


def empty_speaker(root: Path) -> tuple[str, tuple[str, ...]]:
    meta = load_json(root / "metadata.json")
    meta["speakers"][SPEAKERS[1]] = []
    save_json(root / "metadata.json", meta)
    return "metadata.json", (SPEAKERS[1], "empty")


def held_out_in_training(root: Path) -> tuple[str, tuple[str, ...]]:
    meta = load_json(root / "metadata.json")
    entry = load_json(root / "testdata.json")["utterances"][0]
    meta["speakers"][SPEAKERS[2]].append(entry)
    save_json(root / "metadata.json", meta)
    return entry["feature_path"], ("training", "test utterance")


def text_file_pt(root: Path) -> tuple[str, tuple[str, ...]]:
    name = train_names(root)[1]
    (root / name).write_text("this is not a tensor\n", encoding="utf-8")
    return name, ("not a torch tensor file",)


def passwd_symlink_pt(root: Path) -> tuple[str, tuple[str, ...]]:
    name = held_out_names(root)[1]
    (root / name).unlink()
    (root / name).symlink_to("/etc/passwd")
    return name, ("refused", "symbolic link", "outside the data set")


def symlink_outside(root: Path) -> tuple[str, tuple[str, ...]]:
    """A symbolic link to a perfectly good feature file, but one outside the data set: refused, not read."""
    name = train_names(root)[2]
    outside = root.parent / "elsewhere.pt"
    (root / name).replace(outside)
    (root / name).symlink_to(outside)
    return name, ("refused", "symbolic link", str(outside))


class Payload:
    """Unpickling this without ``weights_only`` would create the file ``PWNED`` beside the data set."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def pickle_payload_pt(root: Path) -> tuple[str, tuple[str, ...]]:
    name = held_out_names(root)[2]
    torch.save(Payload(root.parent / "PWNED"), root / name)
    return name, ("refused", "not a plain tensor file", "Unsupported global")


def truncated_pt(root: Path) -> tuple[str, tuple[str, ...]]:
    name = train_names(root)[3]
    data = (root / name).read_bytes()
    (root / name).write_bytes(data[: len(data) // 3])
    return name, ("truncated",)


def traversal_in_metadata(root: Path) -> tuple[str, tuple[str, ...]]:
    meta = load_json(root / "metadata.json")
    meta["speakers"][SPEAKERS[0]][0]["feature_path"] = "../../etc/passwd"
    save_json(root / "metadata.json", meta)
    return "metadata.json", ("../../etc/passwd", "inside the data set")


def absolute_path_in_testdata(root: Path) -> tuple[str, tuple[str, ...]]:
    testdata = load_json(root / "testdata.json")
    testdata["utterances"][0]["feature_path"] = "/etc/passwd"
    save_json(root / "testdata.json", testdata)
    return "testdata.json", ("/etc/passwd", "inside the data set")


DAMAGE: list[Damage] = [empty_speaker, held_out_in_training, text_file_pt, passwd_symlink_pt, symlink_outside,
                        pickle_payload_pt, truncated_pt, traversal_in_metadata, absolute_path_in_testdata]
DAMAGE_IDS = [d.__name__ for d in DAMAGE]


def assert_one_error_line(code: int, out: str, err: str, path: Path, words: tuple[str, ...]) -> None:
    assert "Traceback" not in out + err, out + err
    assert code == 2, out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(path) in lines[0], (path, lines[0])
    assert all(w.lower() in lines[0].lower() for w in words), (words, lines[0])


def assert_no_cache(home: Path) -> None:
    cache = home / "cache"
    assert not cache.exists() or list(cache.iterdir()) == [], list(cache.iterdir())


@pytest.mark.parametrize("damage", DAMAGE, ids=DAMAGE_IDS)
def test_data_check_names_the_file(cli: CliRunner, data: Path, damage: Damage) -> None:
    name, words = damage(data)
    code, out, err = run(cli, "data", "check", data)
    assert "Traceback" not in out + err, out + err
    assert code == 2, out + err
    problems = [line for line in err.splitlines() if line.startswith("problem: ")]
    naming = [line for line in problems if str(data / name) in line and all(w.lower() in line.lower() for w in words)]
    assert len(naming) == 1, (name, words, problems)
    assert not (data.parent / "PWNED").exists(), "a pickled payload ran"


@pytest.mark.parametrize("damage", DAMAGE, ids=DAMAGE_IDS)
def test_train_refuses(cli: CliRunner, data: Path, tmp_path: Path, damage: Damage) -> None:
    name, words = damage(data)
    code, out, err = run(cli, "train", "--data", data, *TRAIN, "--out", tmp_path / "run", "--home", tmp_path / "home")
    assert_one_error_line(code, out, err, data / name, words)
    assert not (data.parent / "PWNED").exists(), "a pickled payload ran"
    assert not (tmp_path / "run").exists()
    assert_no_cache(tmp_path / "home")


@pytest.mark.parametrize("damage", DAMAGE, ids=DAMAGE_IDS)
def test_search_refuses(cli: CliRunner, data: Path, tmp_path: Path, damage: Damage) -> None:
    name, words = damage(data)
    home = tmp_path / "home"
    code, out, err = run(cli, "search", "--data", data, "--study", "s", *SEARCH, "--home", home)
    assert_one_error_line(code, out, err, data / name, words)
    assert not (data.parent / "PWNED").exists(), "a pickled payload ran"
    assert not (home / "s.db").exists() and not (home / "s").exists()
    assert_no_cache(home)


@pytest.mark.parametrize("damage", DAMAGE, ids=DAMAGE_IDS)
def test_predict_refuses(cli: CliRunner, data: Path, trained: Path, tmp_path: Path, damage: Damage) -> None:
    name, words = damage(data)
    out_csv = tmp_path / "output.csv"
    code, out, err = run(cli, "predict", trained, "--data", data, "--out", out_csv, "--device", "cpu",
                         "--home", tmp_path / "home")
    assert_one_error_line(code, out, err, data / name, words)
    assert not (data.parent / "PWNED").exists(), "a pickled payload ran"
    assert not out_csv.exists()
    assert_no_cache(tmp_path / "home")


def test_symlink_inside_the_data_set_is_read(cli: CliRunner, data: Path, tmp_path: Path) -> None:
    """Only links leading out of the data set are refused."""
    name = train_names(data)[0]
    (data / name).replace(data / "moved.pt")
    (data / name).symlink_to("moved.pt")
    code, _, err = run(cli, "train", "--data", data, *TRAIN, "--out", tmp_path / "run", "--home", tmp_path / "home")
    assert code == 0, err


# --- a data set without test utterances (testdata.json absent or empty) --------------------------------------


def drop_test_set(root: Path, how: str) -> None:
    for name in held_out_names(root):
        (root / name).unlink()
    if how == "absent":
        (root / "testdata.json").unlink()
    else:
        save_json(root / "testdata.json", {"n_mels": 40, "utterances": []})
    (root / "answers.csv").unlink()


@pytest.mark.parametrize("how", ["absent", "empty"])
def test_no_test_set_trains_and_predict_says_there_is_nothing(cli: CliRunner, data: Path, tmp_path: Path,
                                                              how: str) -> None:
    drop_test_set(data, how)
    code, out, err = run(cli, "data", "check", data)
    assert code == 0, out + err
    home, run_dir = tmp_path / "home", tmp_path / "run"
    code, out, err = run(cli, "train", "--data", data, *TRAIN, "--out", run_dir, "--home", home)
    assert code == 0, out + err
    assert (run_dir / "model.safetensors").is_file() and not (run_dir / "output.csv").exists()
    for args in ([run_dir], [run_dir, "--data", data]):  # the run's own data set, and the same one named
        out_csv = tmp_path / "output.csv"
        code, out, err = run(cli, "predict", *args, "--out", out_csv, "--device", "cpu", "--home", home)
        assert_one_error_line(code, out, err, data, ("no test utterances", "testdata.json", "to predict"))
        assert not out_csv.exists()


def test_no_test_set_searches_and_exports(cli: CliRunner, data: Path, tmp_path: Path) -> None:
    drop_test_set(data, "absent")
    home = tmp_path / "home"
    code, out, err = run(cli, "search", "--data", data, "--study", "s", *SEARCH, "--home", home)
    assert code == 0, out + err
    assert (home / "s" / "best" / "model.safetensors").is_file()
    assert not (home / "s" / "best" / "output.csv").exists()


def test_no_test_set_opens_with_no_test_utterances(data: Path, tmp_path: Path) -> None:
    """The store's content id does not need the file; with it back, the store is the one it was."""
    drop_test_set(data, "absent")
    store = open_store(data, tmp_path / "home")
    assert store.dataset.test == () and store.test_indices().size == 0
    assert len(store.train_indices()) == len(SPEAKERS) * (PER_SPEAKER - 1)


# --- fuzzed feature files -----------------------------------------------------------------------------------


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One seeded mutation: bit flips, random bytes, a truncation, an insertion or a deletion."""
    out = bytearray(data)
    kind = rng.choice(["flip", "overwrite", "truncate", "insert", "delete"])
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == "overwrite":
        for _ in range(rng.randint(5, 50)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind == "truncate":
        del out[rng.randrange(len(out)):]
    elif kind == "insert":
        at = rng.randrange(len(out))
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        at = rng.randrange(len(out))
        del out[at : at + rng.randint(1, 64)]
    return bytes(out)


def intact(data: bytes, original: torch.Tensor) -> bool:
    """Whether a mutation left the file whole: its records pass their CRCs and it holds the same tensor
    (a flip in the archive's alignment padding changes nothing that is read)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if archive.testzip() is not None:
                return False
        tensor = torch.load(io.BytesIO(data), weights_only=True)
    except Exception:
        return False
    return isinstance(tensor, torch.Tensor) and torch.equal(tensor, original)


def fuzzed(count: int, salt: int) -> tuple[bytes, list[bytes], int]:
    """The real .pt, ``count`` damaged mutations of it (seeded) and how many intact ones were drawn again."""
    source = sample_utterance(SPEAKERS[0], 0).read_bytes()
    original = torch.load(io.BytesIO(source), weights_only=True)
    cases: list[bytes] = []
    redrawn = 0
    seed = 0
    while len(cases) < count:
        mutated = mutate(source, random.Random(salt * 1_000_003 + seed))
        seed += 1
        if intact(mutated, original):
            redrawn += 1
        else:
            cases.append(mutated)
    return source, cases, redrawn


@pytest.fixture
def pair(tmp_path: Path) -> Path:
    """The smallest data set: two speakers of one utterance each, the first one the fuzzer's source tensor."""
    need(HW4_SAMPLE)
    with DatasetWriter(tmp_path / "pair", 40, {"kind": "test"}) as writer:
        for speaker in SPEAKERS[:2]:
            writer.add(speaker, "u0", torch.load(sample_utterance(speaker, 0), weights_only=True).numpy())
        return writer.commit()


def test_200_fuzzed_feature_files_each_end_in_one_error_line(cli: CliRunner, pair: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """200 seeded mutations of a real .pt through ``automel data check``: exit 2, one problem line naming
    the file, no traceback. (A mutation that leaves the file intact is drawn again; there are few.)"""
    command = typer.main.get_command(app)  # built once: rebuilding the whole app per call costs more than a check
    monkeypatch.setattr(typer.testing, "_get_command", lambda _: command, raising=False)
    source, cases, redrawn = fuzzed(200, salt=13)
    assert redrawn < 20, f"{redrawn} mutations left the file intact: the fuzzer hardly damages anything"
    data = pair
    target = data / train_names(data)[0]  # written from the same real tensor as the source file
    target.write_bytes(source)
    code, _, err = run(cli, "data", "check", data)
    assert code == 0, err  # the unmutated source is a valid feature file here
    failures = []
    for seed, mutated in enumerate(cases):
        target.write_bytes(mutated)
        code, out, err = run(cli, "data", "check", data)
        problems = [line for line in err.splitlines() if line.startswith("problem: ")]
        if ("Traceback" in out + err or code != 2 or len(problems) != 1 or str(target) not in problems[0]
                or f"1 problem(s) in {data}" not in err):
            failures.append(f"case {seed}: exit {code}: {err.strip()[-300:]}")
    assert not failures, "\n".join(failures)


def test_fuzzed_feature_files_stop_the_cache_build(data: Path, tmp_path: Path) -> None:
    """The path train, search and predict share: open_store raises DataError naming the file, builds nothing."""
    _, cases, _ = fuzzed(40, salt=31)
    target = data / train_names(data)[0]
    home = tmp_path / "home"
    for seed, mutated in enumerate(cases):
        target.write_bytes(mutated)
        with pytest.raises(DataError) as caught:
            open_store(data, home)
        message = str(caught.value)
        assert str(target) in message and "\n" not in message, (seed, message)
        assert_no_cache(home)
