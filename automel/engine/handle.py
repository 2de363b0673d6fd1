"""One study handle: where a study lives, how it opens, and the data set it was run on.

A study named NAME in a home directory is two things side by side:

- ``<home>/NAME.db``: its default storage (SQLite), unless an explicit storage URL (another SQLite file,
  ``journal:PATH`` or PostgreSQL) holds it;
- ``<home>/NAME/``: its folder, with ``artifacts/`` (the trials' weights), ``logs/`` (the workers'),
  ``best/`` (the export) and ``.export.lock`` (one export writer at a time).

:class:`StudyHandle` is the only code that builds those paths, lists the studies of a home, turns a handle
into a storage URL and opens the study (:func:`automel.engine.study.open_storage` does the storage kinds),
and checks that the study's data set is still the one it ran on (:meth:`StudyHandle.workspace`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna

from automel.engine.record import StudyRecord
from automel.engine.study import adopt_content_id, check_storage_folder, open_storage, storage_file
from automel.errors import StudyError
from automel.home import check_study_name
from automel.outputs import Inside
from automel.redact import redact
from automel.train.fit import Workspace, open_workspace

DATABASE_SUFFIX = ".db"


@dataclass(frozen=True)
class StudyHandle:
    """Study ``name`` of ``home``, held in ``storage`` (a URL) or, when that is None, in ``<home>/<name>.db``.

    The name is checked on creation (:func:`automel.home.check_study_name`), so every path below lies inside
    the home.
    """

    home: Path
    name: str
    storage: str | None = None

    def __post_init__(self) -> None:
        check_study_name(self.name)

    @classmethod
    def of(cls, study: optuna.Study, home: Path, storage: str | None = None) -> StudyHandle:
        """The handle of an opened ``study`` whose files are in ``home``."""
        return cls(Path(home), study.study_name, storage)

    @classmethod
    def find(cls, home: Path, name: str | None, storage: str | None = None) -> StudyHandle:
        """Study ``name``, or, when no name is given, the only study in ``home``'s default storage."""
        if name is None:
            names = cls.names_in(home)
            if len(names) != 1:
                raise StudyError(f"{home}: {'no studies' if not names else 'several studies'}; pass `study`"
                                 + (f" (one of {', '.join(names)})" if names else ""))
            name = names[0]
        return cls(Path(home), name, storage)

    @staticmethod
    def databases(home: Path) -> list[Path]:
        """The default study databases of ``home`` (``*.db``), by name."""
        return sorted(Path(home).glob(f"*{DATABASE_SUFFIX}"))

    @classmethod
    def names_in(cls, home: Path) -> list[str]:
        return [path.stem for path in cls.databases(home)]

    # -- paths ------------------------------------------------------------------------------------------

    @property
    def database(self) -> Path:
        """``<home>/<name>.db``, the default storage (whether or not this study uses it)."""
        return self.home / f"{self.name}{DATABASE_SUFFIX}"

    @property
    def url(self) -> str:
        """The storage URL: the explicit one, else ``sqlite:///<home>/<name>.db``."""
        return self.storage or f"sqlite:///{self.database.resolve()}"

    @property
    def storage_file(self) -> Path | None:
        """The file that holds the study (SQLite or journal); None for a server."""
        return storage_file(self.url)

    @property
    def folder(self) -> Path:
        return self.home / self.name

    @property
    def artifacts(self) -> Path:
        """The trials' kept weights (Optuna's file-system artifact store)."""
        return self.folder / "artifacts"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def best(self) -> Path:
        """The study's export folder."""
        return self.folder / "best"

    @property
    def export_lock(self) -> Path:
        return self.folder / ".export.lock"

    def reads(self, study: optuna.Study, data_root: Path | None = None, *, whole_folder: bool = True) -> list[Inside]:
        """The folders a report or an export of ``study`` reads, which its output may not lie in: the study's
        own folder (or, without ``whole_folder``, the trials' weights in it) and its data set (``data_root``,
        or the recorded one)."""
        inside: list[Inside] = [(f"the folder of study '{self.name}'", self.folder) if whole_folder
                                else (f"the trial weights of study '{self.name}'", self.artifacts)]
        dataset = study.user_attrs.get("dataset")
        root = data_root or (dataset.get("root") if isinstance(dataset, dict) else None)
        return [*inside, ("the data set", Path(root))] if root else inside

    # -- opening -----------------------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the default database exists; an explicit storage is taken to exist (opening tells)."""
        return self.storage is not None or self.database.exists()

    def load(self) -> optuna.Study:
        """The existing study, read without creating anything (no file, folder or study)."""
        if not self.exists():
            raise StudyError(f"no study '{self.name}' in {self.home} (run `automel studies` to list them)")
        held_in = self.storage_file if self.storage is not None else None
        if held_in is not None:
            check_storage_folder(self.url)  # a missing folder is said as such (a typo), before the missing file
            if not held_in.exists():
                raise StudyError(redact(f"storage {self.url} does not exist: no study '{self.name}' there"))
        try:
            return optuna.load_study(study_name=self.name, storage=open_storage(self.url, heartbeat=False))
        except KeyError:
            raise StudyError(redact(f"storage {self.url} has no study '{self.name}'")) from None

    def workspace(self, study: optuna.Study, data_root: Path | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> Workspace:
        """The study's data set (at ``data_root``, a copy, when given) with its recorded split; refused if it is
        not on this machine or its content is not the study's (changed since, or another data set)."""
        saved = StudyRecord.read(study)
        root = Path(data_root) if data_root is not None else Path(saved.dataset.root)
        if not root.is_dir():
            raise StudyError(f"the study's data set {root} is not on this machine; pass `data` with a copy of it")
        work = open_workspace(root, self.home, split_record=saved.split, on_progress=on_progress)
        adopt_content_id(study, work.store)
        recorded = StudyRecord.read(study).content_id
        if work.store.content_id != recorded:
            raise StudyError(f"{root} is not study '{self.name}''s data set, or has changed since it ran: its "
                             f"fingerprint is {work.store.content_id}, the study's is {recorded}")
        return work
