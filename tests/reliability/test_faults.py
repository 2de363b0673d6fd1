"""Faults from outside (issue 13, items 8, 9, 10 and "Permissions"), each through the CLI in a real process.

- A full disk or a read-only home ends the cache build, a search (study, artifacts, export) and
  ``data prepare`` with one line and a non-zero exit; no trial stays RUNNING, no half export remains, and
  the same command resumes once there is room. The disk is a small tmpfs that the test mounts (as root).
- SIGKILL leaves temporary folders named after the dead process; the next run clears them and says so.
  ``data prepare --jobs 2`` takes its worker processes (and multiprocessing's resource tracker) down with it.
- SIGTERM is handled like Ctrl-C: the running trial fails with "terminated (SIGTERM)", the summary is
  printed and the exit code is 143, in ``automel search`` and ``automel worker``.
- What is created honours the umask, as any file the user creates does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
import soundfile as sf
import torch

from automel.engine.handle import StudyHandle
from automel.engine.study import open_storage
from automel.errors import DiskError
from automel.files import sweep_leftovers
from automel.model_config import ModelConfig
from automel.model_folder import write_run_dir
from automel.submission import write_submission_rows

TINY = ["--encoders", "transformer", "--poolings", "mean", "--heads", "softmax", "--device", "cpu", "--pruner",
        "none", "--no-refit", "--quality", "fast", "--grace-period", "3"]
STEPS = ["--steps-per-trial", "40"]  # validations every 10 steps: a trial reports early and runs on a while


def automel(home: Path, *args: object, code: str | None = None) -> subprocess.Popen[str]:
    """``automel ARGS`` in a new process (``code`` runs first in it, e.g. to pause at a chosen point)."""
    env = {**os.environ, "AUTOMEL_HOME": str(home), "COLUMNS": "200"}
    head = [sys.executable, "-m", "automel"] if code is None else [sys.executable, "-c", code + PAUSED_MAIN]
    return subprocess.Popen([*head, *[str(a) for a in args]], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


PAUSED_MAIN = "\nimport sys\nsys.argv[0] = 'automel'\nfrom automel.cli import main\nmain()\n"


def pause_after(target: str, marker: Path) -> str:
    """Code that makes ``module:attribute`` (``Class.method`` too) touch ``marker`` and sleep once it ran."""
    module, _, qualified = target.partition(":")
    owner, _, name = qualified.rpartition(".")
    return (f"import importlib, pathlib, time\n"
            f"owner = importlib.import_module({module!r})\n"
            + (f"owner = getattr(owner, {owner!r})\n" if owner else "")
            + f"original = getattr(owner, {name!r})\n"
            f"def paused(*args, **kwargs):\n"
            f"    result = original(*args, **kwargs)\n"
            f"    pathlib.Path({str(marker)!r}).touch()\n"
            f"    time.sleep(600)\n"
            f"    return result\n"
            f"setattr(owner, {name!r}, paused)\n")


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def one_error_line(stderr: str) -> str:
    """The one ``error:`` line of ``stderr``; there must be no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def wait_for(predicate: object, what: str, proc: subprocess.Popen[str] | None = None, timeout: float = 180) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {proc.communicate()[1]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows of a read-only query on a study's SQLite file, the connection closed after (plain sqlite3: it
    creates nothing, and holds nothing open that would keep the disk from being remounted read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        return conn.execute(sql).fetchall()


def reported_running(db: Path) -> bool:
    """A RUNNING trial has reported a validation."""
    if not db.exists():
        return False
    try:
        rows = query(db, "SELECT COUNT(*) FROM trials t JOIN trial_intermediate_values v "
                         "ON v.trial_id = t.trial_id WHERE t.state = 'RUNNING'")
    except sqlite3.Error:
        return False
    return bool(rows[0][0])


def trials(home: Path, study: str) -> list[tuple[str, str | None]]:
    """``(state, fail reason)`` of each trial of ``study``, in order, as Optuna reads them; its connections
    are closed after (an open SQLite file would keep the disk from being remounted read-only)."""
    storage = open_storage(StudyHandle(home, study).url, heartbeat=False)
    assert isinstance(storage, optuna.storages.RDBStorage)
    try:
        found = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
        return [(t.state.name, t.user_attrs.get("fail_reason")) for t in found]
    finally:
        storage.engine.dispose()


def states(home: Path, study: str) -> list[str]:
    return [state for state, _ in trials(home, study)]


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def finished_pid() -> int:
    """The id of a process that has ended (and will not be reused within a test)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def write_tones(root: Path, speakers: int = 3, per_speaker: int = 4, seconds: float = 0.5) -> Path:
    """A folder per speaker of short noisy tones."""
    rate = 16_000
    for s in range(speakers):
        for u in range(per_speaker):
            t = np.arange(int(seconds * rate)) / rate
            noise = np.random.default_rng(10 * s + u).normal(0.0, 0.02, t.size)
            wave = (0.3 * np.sin(2 * np.pi * (150 + 60 * s + 7 * u) * t) + noise).astype(np.float32)
            (root / f"spk{s}").mkdir(parents=True, exist_ok=True)
            sf.write(str(root / f"spk{s}" / f"u{u}.wav"), wave, rate)
    return root


class Disk:
    """A small tmpfs that a test mounts (root only), fills, makes read-only, and always unmounts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mounted = False

    def mount(self, size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a full or read-only disk is a small tmpfs this test mounts, which needs root")
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=755", "tmpfs", str(self.path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN in this container?): {done.stderr.strip()}")
        self.mounted = True
        return self.path

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True, capture_output=True)

    def fill(self, leave: int = 0) -> Path:
        """A file taking all the free space but ``leave`` bytes."""
        filler = self.path / "filler"
        stat = os.statvfs(self.path)
        size = stat.f_bfree * stat.f_frsize - leave
        with filler.open("ab") as fh:
            if size > 0:
                os.posix_fallocate(fh.fileno(), fh.tell(), size)
        return filler

    def unmount(self) -> None:
        if self.mounted:
            if subprocess.run(["umount", str(self.path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    mounted = Disk(tmp_path / "disk")
    try:
        yield mounted
    finally:
        mounted.unmount()


# --- item 8: a full disk, a read-only home ---------------------------------------------------------------


def test_full_disk_while_the_cache_builds_is_one_line_then_resumes(hw4_sample: Path, disk: Disk) -> None:
    home = disk.mount("4m")  # the feature cache of the sample takes 11 MB
    code, _, stderr = finish(automel(home, "search", "--study", "s", "--data", hw4_sample, "--trials", 1,
                                     "--steps-per-trial", 10, *TINY))
    assert code == 1
    line = one_error_line(stderr)
    assert line.startswith(f"error: no space left on {home / 'cache'} (needed ~11 MB, "), line
    assert not (home / "cache").exists() or not list((home / "cache").iterdir())  # no half-built cache
    assert not (home / "s.db").exists()  # the study was never created: nothing to resume but the command
    disk.remount("size=32m")
    code, _, stderr = finish(automel(home, "search", "--study", "s", "--data", hw4_sample, "--trials", 1,
                                     "--steps-per-trial", 10, *TINY))
    assert code == 0, stderr
    assert (home / "s" / "best" / "model.safetensors").is_file()
    assert states(home, "s") == ["COMPLETE"]


def test_disk_full_mid_trial_fails_it_then_resumes_and_a_full_export_keeps_the_old(
        hw4_sample: Path, disk: Disk) -> None:
    home = disk.mount("32m")
    search = ["search", "--study", "s", "--data", hw4_sample, "--trials", 1, *STEPS, *TINY]
    proc = automel(home, *search)
    wait_for(lambda: reported_running(home / "s.db"), "a trial's first validation", proc)
    filler = disk.fill()  # nothing left: the trial's next record to the study (or its weights) fails
    code, _, stderr = finish(proc)
    assert code == 1
    line = one_error_line(stderr)
    assert line.startswith(f"error: no space left on {home}"), line  # s.db, or s/artifacts if SQLite had room
    filler.unlink()
    ((state, reason),) = trials(home, "s")  # failed before the process ended, with the reason
    assert state == "FAIL" and reason == line.removeprefix("error: ")

    code, _, stderr = finish(automel(home, *search))  # room again: the same command resumes
    assert code == 0, stderr
    assert states(home, "s") == ["FAIL", "COMPLETE"]
    best = home / "s" / "best"
    before = files(best)

    filler = disk.fill(leave=300 * 1024)  # less than the weights: the export is refused before writing
    code, _, stderr = finish(automel(home, "export", "--study", "s"))
    assert code == 1
    line = one_error_line(stderr)
    assert line.startswith(f"error: no space left on {home / 's'} (needed ~"), line
    assert files(best) == before
    assert not list(best.parent.glob(".best.*"))
    filler.unlink()

    disk.remount("ro")  # a read-only home: one line, the study untouched
    code, _, stderr = finish(automel(home, *search, "--trials", 2))
    assert code == 1
    assert one_error_line(stderr).startswith(f"error: read-only: {home}"), stderr
    disk.remount("rw")
    assert states(home, "s") == ["FAIL", "COMPLETE"]


def test_read_only_home_and_output_are_one_line(hw4_sample: Path, disk: Disk, tmp_path: Path) -> None:
    home = disk.mount("32m")
    disk.remount("ro")
    code, _, stderr = finish(automel(home, "search", "--data", hw4_sample, "--trials", 1, *TINY))
    assert code == 1
    assert one_error_line(stderr) == f"error: read-only: {home / 'cache'} is on a read-only file system"
    tones = write_tones(tmp_path / "tones")
    code, _, stderr = finish(automel(home, "data", "prepare", tones, home / "out"))
    assert code == 1
    assert one_error_line(stderr) == f"error: read-only: {home} is on a read-only file system"


def test_prepare_on_a_full_disk_is_one_line_then_resumes(disk: Disk, tmp_path: Path) -> None:
    tones = write_tones(tmp_path / "tones")
    where = disk.mount("2m")
    filler = disk.fill(leave=64 * 1024)
    code, _, stderr = finish(automel(tmp_path, "data", "prepare", tones, where / "out"))
    assert code == 1
    line = one_error_line(stderr)
    assert line.startswith(f"error: no space left on {where} (needed ~0.2 MB, 0.1 MB free)"), line
    assert sorted(p.name for p in where.iterdir()) == ["filler"]  # neither OUT nor a temporary folder
    filler.unlink()
    code, _, stderr = finish(automel(tmp_path, "data", "prepare", tones, where / "out"))
    assert code == 0, stderr
    assert (where / "out" / "metadata.json").is_file()


def test_a_trial_s_weights_on_a_full_disk_leave_no_part_behind(disk: Disk, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused before the upload when the room is short; and a write that runs out of room anyway (the
    check passed, then someone else filled the disk) removes what it wrote."""
    from automel.engine.artifacts import artifact_store, save_trial_artifacts

    store = artifact_store(disk.mount("2m") / "artifacts")
    disk.fill(leave=256 * 1024)
    trial = optuna.create_study().ask()
    record = ModelConfig({"encoder": "x"}, 40, ("a", "b"), {}, {}, {})
    with pytest.raises(DiskError, match=r"^no space left on .*/artifacts \(needed ~1\.0 MB, 0\.2 MB free\)"):
        save_trial_artifacts(trial, store, {"w": torch.zeros(256 * 1024)}, record)
    monkeypatch.setattr(DiskError, "check", classmethod(lambda cls, path, needed=None: None))
    with pytest.raises(DiskError, match=r"^no space left on "):
        save_trial_artifacts(trial, store, {"w": torch.zeros(256 * 1024)}, record)
    assert not list(store.path.iterdir()) and not trial.user_attrs


def test_a_disk_fault_is_found_behind_storage_errors() -> None:
    """SQLite's "database or disk is full" behind SQLAlchemy and Optuna, and an OSError behind Optuna's
    ``AssertionError: Should not reach.``, are one DiskError each."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import OperationalError

    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # SQLITE_FULL, as sqlite3 sets it
    try:
        try:
            try:
                raise OperationalError("COMMIT", {}, full) from full
            except OperationalError as exc:
                raise StorageInternalError("An exception is raised during the commit.") from exc
        except StorageInternalError:
            raise AssertionError("Should not reach.")  # noqa: B904 - Optuna's own shape
    except AssertionError as exc:
        found = DiskError.find(exc, Path("/data/s.db"))
    assert found is not None and str(found).startswith("no space left on /data/s.db")

    read_only = OSError(errno.EROFS, "Read-only file system", "/data/x")
    assert DiskError.find(RuntimeError("unrelated")) is None
    wrapped = RuntimeError("boom")
    wrapped.__context__ = read_only
    assert str(DiskError.find(wrapped)) == "read-only: /data/x is on a read-only file system"


# --- item 10: SIGTERM --------------------------------------------------------------------------------------


def test_sigterm_fails_the_trial_prints_the_summary_and_exits_143(hw4_sample: Path, isolated_home: Path) -> None:
    home = isolated_home
    proc = automel(home, "search", "--study", "s", "--data", hw4_sample, "--trials", 3, *STEPS, *TINY)
    wait_for(lambda: reported_running(home / "s.db"), "a trial's first validation", proc)
    proc.send_signal(signal.SIGTERM)
    code, out, stderr = finish(proc, 120)
    assert code == 143, stderr
    assert "terminated (SIGTERM): the study is consistent; rerun the same command to resume" in stderr
    assert "study s (" in out and "1 failed" in out  # the summary
    assert trials(home, "s") == [("FAIL", "terminated (SIGTERM)")]

    worker = automel(home, "worker", "--study", "s")
    wait_for(lambda: reported_running(home / "s.db"), "the worker's first validation", worker)
    worker.send_signal(signal.SIGTERM)
    code, out, stderr = finish(worker, 120)
    assert code == 143, stderr
    assert "terminated (SIGTERM)" in stderr and "done: 0 trials finished here" in out
    assert trials(home, "s") == [("FAIL", "terminated (SIGTERM)")] * 2


def test_sigterm_of_a_parallel_search_is_passed_on_to_its_workers(tmp_path: Path) -> None:
    """A scheduler may send SIGTERM to ``automel search --workers N`` alone: each worker gets one in turn
    (and so records "terminated (SIGTERM)", as the test above shows a worker does)."""
    from automel.engine.parallel import Worker, wait_workers
    from automel.errors import Terminated

    script = ("import pathlib, signal, sys, time\n"
              "def got(number, frame):\n"
              "    pathlib.Path(sys.argv[1]).write_text(signal.Signals(number).name)\n"
              "    sys.exit(143)\n"
              "signal.signal(signal.SIGTERM, got)\n"
              "signal.signal(signal.SIGINT, got)\n"
              "pathlib.Path(sys.argv[1] + '.ready').touch()\n"
              "time.sleep(120)\n")
    seen = [tmp_path / f"worker-{i}" for i in range(2)]
    workers = [Worker(i, "cpu", 1, tmp_path / f"worker-{i}.log",
                      subprocess.Popen([sys.executable, "-c", script, str(path)])) for i, path in enumerate(seen)]
    for path in seen:
        wait_for(path.with_name(path.name + ".ready").exists, "the worker to start")

    def poll() -> None:
        raise Terminated()  # what the SIGTERM handler raises in the main thread

    with pytest.raises(Terminated):
        wait_workers(workers, poll)
    assert [w.process.returncode for w in workers] == [143, 143]
    assert [path.read_text() for path in seen] == ["SIGTERM", "SIGTERM"]


# --- item 9: leftovers of killed processes ----------------------------------------------------------------


def test_sigkill_during_prepare_leaves_a_folder_the_next_run_clears(tmp_path: Path) -> None:
    tones = write_tones(tmp_path / "tones")
    out, marker = tmp_path / "out", tmp_path / "paused"
    proc = automel(tmp_path, "data", "prepare", tones, out,
                   code=pause_after("automel.data.layout:DatasetWriter.add", marker))
    wait_for(marker.exists, "the first feature file", proc)
    proc.kill()
    proc.wait(timeout=30)
    (left,) = tmp_path.glob(".out.*")
    assert left.name.startswith(f".out.{proc.pid}@{socket.gethostname()}.") and any(left.iterdir())
    code, _, stderr = finish(automel(tmp_path, "data", "prepare", tones, out))
    assert code == 0, stderr
    assert f"note: removed {left}, left by process {proc.pid} (no longer running)" in stderr
    assert not list(tmp_path.glob(".out.*"))
    assert (out / "metadata.json").is_file()


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its parent's wait is missing


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the worker processes")
def test_sigkill_of_prepare_takes_its_workers_and_resource_tracker_down(tmp_path: Path) -> None:
    tones = write_tones(tmp_path / "tones", speakers=4, per_speaker=40, seconds=4.0)  # several seconds of work
    proc = automel(tmp_path, "data", "prepare", tones, tmp_path / "out", "--jobs", 2)
    wait_for(lambda: len(children(proc.pid)) >= 3, "two workers and the resource tracker", proc)
    spawned = children(proc.pid)
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(pid) for pid in spawned):
        time.sleep(0.2)
    assert not [pid for pid in spawned if alive(pid)], "worker processes outlived their parent"


def test_sigkill_during_export_keeps_the_previous_and_the_next_export_clears_the_leftover(
        hw4_sample: Path, isolated_home: Path) -> None:
    home = isolated_home
    code, _, stderr = finish(automel(home, "search", "--study", "s", "--data", hw4_sample, "--trials", 1,
                                     "--steps-per-trial", 10, *TINY))
    assert code == 0, stderr
    best = home / "s" / "best"
    before = files(best)
    marker = home / "paused"
    proc = automel(home, "export", "--study", "s", code=pause_after("automel.files:honour_umask", marker))
    wait_for(marker.exists, "the new export, complete in its temporary folder", proc)
    proc.kill()
    proc.wait(timeout=30)
    assert files(best) == before  # what already held: the previous export is whole
    (left,) = best.parent.glob(".best.*")
    assert left.name.startswith(f".best.{proc.pid}@") and (left / "model.safetensors").is_file()
    code, _, stderr = finish(automel(home, "export", "--study", "s"))
    assert code == 0, stderr
    assert f"note: removed {left}, left by process {proc.pid} (no longer running)" in stderr
    assert not list(best.parent.glob(".best.*"))
    assert json.loads((best / "export.json").read_text())["trial"] == 0


def test_sweep_restores_an_export_moved_aside_and_spares_live_processes(tmp_path: Path) -> None:
    host, dead = socket.gethostname(), finished_pid()
    out = tmp_path / "best"
    aside = tmp_path / f".best.{dead}@{host}.old"  # killed between "move the old aside" and "move the new in"
    aside.mkdir()
    (aside / "config.json").write_text("{}")
    stale = tmp_path / f".best.{dead}@{host}.0a1b2c3d"
    stale.mkdir()
    live = tmp_path / f".best.{os.getpid()}@{host}.0a1b2c3d"
    live.mkdir()
    elsewhere = tmp_path / f".best.{dead}@another-machine.0a1b2c3d"  # a shared home: not ours to judge
    elsewhere.mkdir()
    unrelated = tmp_path / ".best-of.123@x.y"
    unrelated.mkdir()
    assert sweep_leftovers(out) == [stale]
    assert (out / "config.json").is_file() and not aside.exists()
    assert live.exists() and elsewhere.exists() and unrelated.exists()


# --- permissions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "folder", "file"), [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_what_is_written_honours_the_umask(tmp_path: Path, umask: int, folder: int, file: int) -> None:
    from automel.data.prepare import prepare_dataset

    tones = write_tones(tmp_path / "tones", speakers=2, per_speaker=3)
    record = ModelConfig({"encoder": "x"}, 40, ("a", "b"), {}, {}, {})
    previous = os.umask(umask)
    try:
        run_dir = write_run_dir(tmp_path / "run", {"w": torch.zeros(3)}, record, [], [("u1.pt", "a")])
        prepared = prepare_dataset(tones, tmp_path / "prepared").out
        write_submission_rows(tmp_path / "output.csv", [("u1.pt", "a")])
    finally:
        os.umask(previous)
    for made in (run_dir, prepared):
        assert made.stat().st_mode & 0o777 == folder
        modes = {p.name: p.stat().st_mode & 0o777 for p in made.iterdir()}
        assert set(modes.values()) == {file}, modes
    assert {"model.safetensors", "output.csv"} <= set(p.name for p in run_dir.iterdir())
    assert (tmp_path / "output.csv").stat().st_mode & 0o777 == file
