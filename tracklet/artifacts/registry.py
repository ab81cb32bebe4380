"""The local registry of artifact versions: which versions a collection has, and its aliases.

Layout under the artifact directory (``<data root>/artifacts`` unless ``TRACKLET_ARTIFACT_DIR``
says otherwise)::

    projects/<project>/<name>/versions/v0.json   one file per version (replaced only by ``set_type``)
    projects/<project>/<name>/versions/v1.deleted  a deleted version (its number is never reused)
    projects/<project>/<name>/aliases.json       {alias: version number}, replaced atomically
    projects/<project>/<name>/collection.json    the collection's own description and tags (W&B's
                                                 ``ArtifactCollection``), replaced atomically; none until edited
    projects/<project>/<name>/.lock              flock'd while a version is assigned
    projects/<project>/<name>/commits/<id>.json  a server's commit ids: {"version", "digest", "logged_by"}
                                                 of the version each commit answered (made or reused)

Assigning a version holds an exclusive ``flock`` on the collection's lock file, so two processes
logging one collection at once get distinct numbers; the version file is also created with
``os.link`` (which fails if the name exists), so even without the lock no version is overwritten.
A version's files never change; its description, metadata and tags may be edited
(``edit_version``: the version file replaced atomically under the collection's lock);
``latest`` is always the highest version; a custom alias names one version of its collection at
a time (giving it to another version moves it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tracklet.artifacts.durable import sync_directory, sync_file
from tracklet.artifacts.fields import MAX_TAGS, CollectionEdit, CollectionFields, VersionEdit
from tracklet.artifacts.manifest import is_sha256
from tracklet.artifacts.names import LATEST, check_artifact_name, custom_aliases, is_artifact_name, version_number
from tracklet.core.atomicfile import replace_atomically
from tracklet.errors import ArtifactDeleted, ArtifactError, ArtifactNotFound

MAX_VERSION_FILE_BYTES = 16 << 20
DELETED = ".deleted"  # a deleted version's tombstone: versions/vN.deleted
COLLECTION_FILE = "collection.json"  # the collection's description and tags
MAX_COLLECTION_FILE_BYTES = 1 << 20


@dataclasses.dataclass
class VersionInfo:
    """What the registry knows of one version (the manifest itself is a blob)."""

    project: str
    name: str
    version: int
    type: str
    digest: str  # the manifest digest: sha256 over sorted path:digest lines
    manifest: str  # sha256 of the manifest's bytes, its blob
    size: int
    file_count: int
    description: str = ""
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    created_at: float = 0.0
    logged_by: str | None = None  # "project/run_id" of the run that logged it
    aliases: list[str] = dataclasses.field(default_factory=list)  # filled when read
    history_step: int | None = None  # the logging run's last history step when it logged it (W&B's name)
    tags: list[str] = dataclasses.field(default_factory=list)  # W&B's per-version tags (editable)
    # An incremental version (W&B's ``incremental=True``): the sha256 of the manifest blob of the
    # version it was merged onto ("" for none: the collection had no version), from which its
    # increment (files added or changed, paths removed) is known again when it is sent to a server,
    # which merges that onto its own latest version (docs/artifacts.md, "Incremental versions").
    incremental_base: str | None = None
    # A version's commit id: 32 random hex digits drawn when it was logged (``new_commit_id``), sent
    # with its commit, kept with the version the server made of it (merged or not), so a commit sent
    # again (an answer lost, a repeated sync) is known as that commit by its id alone, and a new log
    # of the same files (byte-identical) is not (docs/artifacts.md, "Sent again: the commit id"). A
    # local version reused by a later log of the same files takes that log's id (the one its upload
    # sent, what ``tracklet sync`` sends again). None: stored before session 32.
    commit_id: str | None = None
    # An online run's incremental version whose server's latest couldn't be read when it was stored
    # (refusing, unreachable, not answering within ``incremental.BASE_WAIT_S``): the server's URL. It
    # was built on the data root's latest instead, so this copy may lack files only the server's
    # latest holds; the server merges its increment onto that when it is sent (``tracklet sync``).
    base_unread: str | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.project}/{self.name}:v{self.version}"

    def to_json(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document.pop("aliases")
        if document["history_step"] is None:  # logged outside a run: the version file as before
            document.pop("history_step")
        if not document["tags"]:  # no tags: the version file as before (older readers ignore the key anyway)
            document.pop("tags")
        if document["incremental_base"] is None:  # not incremental: the version file as before
            document.pop("incremental_base")
        if document["commit_id"] is None:  # no commit id (stored before session 32)
            document.pop("commit_id")
        if document["base_unread"] is None:  # its base read from its server, or no server
            document.pop("base_unread")
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any], aliases: list[str]) -> VersionInfo:
        fields = {field.name for field in dataclasses.fields(cls)} - {"aliases"}
        return cls(**{key: value for key, value in document.items() if key in fields}, aliases=aliases)


class BaseMoved(ArtifactError):
    """An incremental version's commit found the collection's latest version other than the one it
    was merged onto (``commit(base=)``): ``latest`` is that version (None: there is none)."""

    def __init__(self, latest: VersionInfo | None) -> None:
        super().__init__("the collection's latest version moved")
        self.latest = latest


def not_found(project: str, name: str, number: int | None, *, deleted: bool, any_deleted: bool) -> ArtifactNotFound:
    """The error for a version that can't be read (``number``; None: the collection's latest), in
    words that say whether it was deleted (then an ``ArtifactDeleted``), for a local or a server
    registry alike."""
    if deleted:
        return ArtifactDeleted(f"artifact {project}/{name}:v{number} was deleted (`tracklet artifact rm`; its "
                               "number is never given to another version)")
    if number is not None:
        return ArtifactNotFound(f"artifact {project}/{name}:v{number} does not exist")
    if any_deleted:
        return ArtifactNotFound(f"artifact {project}/{name} has no version left: every version of it was deleted")
    return ArtifactNotFound(f"no artifact {project}/{name} (no version of it has been logged)")


def new_commit_id() -> str:
    """A logged version's commit id (``VersionInfo.commit_id``): 32 random hex digits."""
    return os.urandom(16).hex()


def is_commit_id(value: object) -> bool:
    """Whether ``value`` is a commit id: 32 lowercase hex digits."""
    return isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def _write_atomic(path: Path, data: bytes) -> None:
    replace_atomically(path, data, durable=True)


class LocalRegistry:
    """Versions and aliases of artifact collections in a local directory."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def collection_dir(self, project: str, name: str) -> Path:
        from tracklet.core.settings import check_name

        return self.root / "projects" / check_name("project", project) / check_artifact_name(name)

    @contextlib.contextmanager
    def _locked(self, directory: Path) -> Iterator[None]:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a+b") as handle:
            try:
                import fcntl
            except ImportError:  # no flock (Windows): exclusive creation of version files still holds
                yield
                return
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _locked_version(self, project: str, name: str, version: int) -> Iterator[Path]:
        """Hold the collection's lock while ``project/name:v<version>`` exists (``ArtifactNotFound``
        if it doesn't); yields the collection's directory."""
        directory = self.collection_dir(project, name)
        with self._locked(directory):
            if version not in self._version_numbers(directory):
                raise self._not_found(project, name, version)
            yield directory

    # ------------------------------------------------------------ reading

    def _version_numbers(self, directory: Path) -> list[int]:
        try:
            names = os.listdir(directory / "versions")
        except (FileNotFoundError, NotADirectoryError):  # no version yet, or a stray file, not a collection
            return []
        numbers = [version_number(name[:-5]) for name in names if name.endswith(".json")]
        return sorted(number for number in numbers if number is not None)

    def _aliases(self, directory: Path) -> dict[str, int]:
        try:
            document = json.loads((directory / "aliases.json").read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as error:
            raise ArtifactError(f"{directory / 'aliases.json'} is damaged: {error}") from None
        if not isinstance(document, dict) or not all(type(n) is int for n in document.values()):
            raise ArtifactError(f"{directory / 'aliases.json'} is damaged: not a map of aliases to versions")
        return {str(alias): number for alias, number in document.items()}

    def _read(self, directory: Path, project: str, name: str, number: int, aliases: dict[str, int],
              latest: int) -> VersionInfo:
        path = directory / "versions" / f"v{number}.json"
        try:
            with open(path, "rb") as handle:
                document = json.loads(handle.read(MAX_VERSION_FILE_BYTES + 1))
        except FileNotFoundError:
            raise self._not_found(project, name, number) from None
        except ValueError as error:
            raise ArtifactError(f"{path} is damaged: {error}") from None
        if not isinstance(document, dict) or document.get("version") != number or not all(
                is_sha256(document.get(key)) for key in ("digest", "manifest")):
            raise ArtifactError(f"{path} is damaged: not a version file of v{number}")
        names = [alias for alias, target in sorted(aliases.items()) if target == number]
        if number == latest:
            names.insert(0, LATEST)
        return VersionInfo.from_json(document, [f"v{number}", *names])

    def version(self, project: str, name: str, selector: str = LATEST) -> VersionInfo:
        """The version ``selector`` (``latest``, ``vN`` or an alias) names."""
        directory = self.collection_dir(project, name)
        numbers = self._version_numbers(directory)
        if not numbers:
            raise self._not_found(project, name, version_number(selector))
        aliases = self._aliases(directory)
        number = version_number(selector)
        if selector == LATEST:
            number = numbers[-1]
        elif number is None:
            if selector not in aliases:
                raise ArtifactNotFound(f"artifact {project}/{name} has no alias {selector!r} (aliases: "
                                       f"{', '.join(['latest', *sorted(aliases)])})")
            number = aliases[selector]
        return self._read(directory, project, name, number, aliases, numbers[-1])

    def read_version(self, project: str, name: str, number: int) -> VersionInfo:
        """Version ``number``'s file alone, without listing the collection (what a registry link
        reads: constant time however many versions there are); its aliases are just ``vN``."""
        return self._read(self.collection_dir(project, name), project, name, number, {}, -1)

    def version_numbers(self, project: str, name: str) -> list[int]:
        """The collection's version numbers, ascending (reads no version file: one listing)."""
        return self._version_numbers(self.collection_dir(project, name))

    def alias_targets(self, project: str, name: str) -> dict[str, int]:
        """The version each alias of the collection names, ``latest`` included (none without a
        version): one listing and the aliases file, no version file read."""
        directory = self.collection_dir(project, name)
        numbers = self._version_numbers(directory)
        return {**self._aliases(directory), LATEST: numbers[-1]} if numbers else {}

    def versions(self, project: str, name: str) -> list[VersionInfo]:
        """Every version of a collection, oldest first."""
        directory = self.collection_dir(project, name)
        numbers = self._version_numbers(directory)
        aliases = self._aliases(directory)
        return [self._read(directory, project, name, number, aliases, numbers[-1]) for number in numbers]

    def collections(self, project: str) -> list[str]:
        """The names of a project's collections that have at least one version."""
        from tracklet.core.settings import check_name

        base = self.root / "projects" / check_name("project", project)
        if not base.is_dir():
            return []
        # Only directories named like a collection: a stray file or foreign directory (.DS_Store, .git)
        # is not one, and must not break the listing.
        return sorted(entry.name for entry in base.iterdir()
                      if is_artifact_name(entry.name) and entry.is_dir() and self._version_numbers(entry))

    def projects(self) -> list[str]:
        base = self.root / "projects"
        return sorted(entry.name for entry in base.iterdir() if entry.is_dir()) if base.is_dir() else []

    # ------------------------------------------------------------ writing

    def commit(self, info: VersionInfo, aliases: list[str], *, base: str | None = None,
               by_commit_id: bool = False, adopt_commit_id: bool = False) -> tuple[VersionInfo, bool]:
        """Add ``info`` as the collection's next version, unless its latest version has the same
        digest (then that version is returned, and ``reused`` is True); then give it ``aliases``.
        ``base`` (an incremental version's): the manifest blob of the latest version it was merged
        onto ("" for none); if the latest is another now, ``BaseMoved`` is raised, holding it, and
        nothing changes. ``by_commit_id`` (a server's commit): the version a commit with
        ``info``'s ``commit_id`` from the same run answered already (made, or reused: the latest had
        its content) is that commit, landed already: it is returned (reused), whatever the latest is
        now; every answer is recorded (``commits/<id>.json``). ``adopt_commit_id`` (the local
        store's commit): a reused version takes ``info``'s ``commit_id``, the one the new log's
        upload sends, so ``tracklet sync`` sends that one again. Returns (the version as stored,
        with its aliases; reused)."""
        custom = custom_aliases(aliases)
        directory = self.collection_dir(info.project, info.name)
        with self._locked(directory):
            numbers = self._version_numbers(directory)
            current = self._aliases(directory)
            reused = False
            landed = None
            if by_commit_id and info.commit_id is not None:
                landed = self._answered(directory, info, numbers, current)
            latest = self._read(directory, info.project, info.name, numbers[-1], current, numbers[-1]) if numbers \
                else None
            if landed is not None:
                info, reused = landed, True
            elif base is not None and (latest.manifest if latest is not None else "") != base:
                raise BaseMoved(latest)
            elif latest is not None:
                if latest.type != info.type:
                    raise ArtifactError(f"artifact {info.project}/{info.name} has type {latest.type!r}; it can't take "
                                        f"a version of type {info.type!r} (use another name)")
                if latest.digest == info.digest:
                    if info.commit_id is not None and latest.commit_id != info.commit_id:
                        if by_commit_id:  # a no-op commit: sent again, it is answered with this version
                            self._record_commit(directory, info.commit_id, latest, info.logged_by)
                        elif adopt_commit_id:
                            self._adopt_commit_id(directory, latest.version, info.commit_id)
                    info, reused = latest, True
            if not reused:
                info.version = self._next_number(directory, numbers)
                info.created_at = info.created_at or time.time()
                if by_commit_id and info.commit_id is not None:  # first: never a version without its record
                    self._record_commit(directory, info.commit_id, info, info.logged_by)
                self._create_version(directory, info)
            if custom and any(current.get(alias) != info.version for alias in custom):
                current.update({alias: info.version for alias in custom})
                _write_atomic(directory / "aliases.json", json.dumps(current, sort_keys=True).encode())
        numbers = self._version_numbers(directory)
        stored = self._read(directory, info.project, info.name, info.version, self._aliases(directory), numbers[-1])
        return stored, reused

    @staticmethod
    def _commit_record(directory: Path, commit_id: str) -> Path:
        if not is_commit_id(commit_id):
            raise ArtifactError(f"{commit_id[:80]!r} is not a commit id (32 lowercase hex digits)")
        return directory / "commits" / f"{commit_id}.json"

    def _record_commit(self, directory: Path, commit_id: str, answer: VersionInfo, logged_by: str | None) -> None:
        """Record (under the collection's lock) that the commit ``commit_id`` of ``logged_by``
        answered ``answer``: written before a new version's file, so none lacks its record; the
        record names the version's digest, so a number a failed creation left to another version
        is not taken for it."""
        path = self._commit_record(directory, commit_id)
        path.parent.mkdir(exist_ok=True)
        _write_atomic(path, json.dumps({"version": answer.version, "digest": answer.digest,
                                        "logged_by": logged_by}, sort_keys=True).encode())

    def _answered(self, directory: Path, info: VersionInfo, numbers: list[int],
                  aliases: dict[str, int]) -> VersionInfo | None:
        """The version the commit ``info.commit_id`` of ``info.logged_by`` answered, if it is still
        there (``_record_commit``); None for a commit not seen before."""
        try:
            record = json.loads(self._commit_record(directory, str(info.commit_id)).read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:  # a record a power cut damaged: not seen, as before it was written
            return None
        if not isinstance(record, dict) or record.get("logged_by") != info.logged_by \
                or record.get("version") not in numbers:
            return None
        version = self._read(directory, info.project, info.name, record["version"], aliases, numbers[-1])
        return version if version.digest == record.get("digest") else None

    def _adopt_commit_id(self, directory: Path, number: int, commit_id: str) -> None:
        """Give version ``number`` (under the collection's lock) the commit id ``commit_id``."""
        path = directory / "versions" / f"v{number}.json"
        document = json.loads(path.read_bytes())
        document["commit_id"] = commit_id
        _write_atomic(path, json.dumps(document, sort_keys=True, indent=1, default=str).encode())

    def _next_number(self, directory: Path, numbers: list[int]) -> int:
        """One more than any version ever created, deleted ones included (a number is never reused)."""
        try:
            names = os.listdir(directory / "versions")
        except FileNotFoundError:
            names = []
        deleted = [version_number(name[:-len(DELETED)]) for name in names if name.endswith(DELETED)]
        used = numbers + [number for number in deleted if number is not None]
        return max(used) + 1 if used else 0

    @contextlib.contextmanager
    def holding(self, connection: Any, project: str, name: str, version: int) -> Iterator[None]:
        """Hold the collection's lock while ``project/name:v<version>`` exists (``ArtifactNotFound``
        if it doesn't): what a model registry's link holds until it commits, so a deletion
        (``delete_version``'s ``check``, under the same lock) sees the link or the link sees the
        version gone, never neither. ``connection`` (the link's transaction) is not used: the lock
        is a file's; it is ``SqlRegistry.holding``'s signature, so a caller holds either alike."""
        with self._locked_version(project, name, version):
            yield

    def was_deleted(self, project: str, name: str, version: int) -> bool:
        """Whether ``project/name:v<version>`` existed and was deleted (its tombstone is there)."""
        return (self.collection_dir(project, name) / "versions" / f"v{int(version)}{DELETED}").exists()

    def _not_found(self, project: str, name: str, number: int | None) -> ArtifactNotFound:
        """Why ``project/name`` (at ``v<number>``) can't be read: that version, or every one, was
        deleted, or it never existed."""
        directory = self.collection_dir(project, name)
        return not_found(project, name, number, deleted=number is not None and self.was_deleted(project, name, number),
                         any_deleted=self._next_number(directory, []) > 0)

    def delete_version(self, project: str, name: str, version: int, *, drop_aliases: bool = False,
                       check: Callable[[None], None] | None = None) -> list[str]:
        """Delete ``project/name:v<version>``: its version file becomes a tombstone (``vN.deleted``,
        so the number is never given again) and ``latest`` falls back to the highest version left.
        A version with custom aliases is only deleted with ``drop_aliases`` (they are removed with it).
        ``check(None)`` runs under the collection's lock before anything changes (raising refuses
        the deletion; the argument: no database transaction, unlike ``SqlRegistry``'s): the model
        registry's links are checked there (``holding``). Returns the aliases
        dropped. Its files stay stored until ``tracklet artifact gc``."""
        with self._locked_version(project, name, version) as directory:
            if check is not None:
                check(None)
            current = self._aliases(directory)
            dropped = sorted(alias for alias, target in current.items() if target == version)
            if dropped and not drop_aliases:
                raise ArtifactError(f"artifact {project}/{name}:v{version} has alias(es) {', '.join(dropped)}: move "
                                    "them to another version first, or delete it with its aliases (delete(delete_aliases=True); "
                                    "tracklet artifact rm --force)")
            if dropped:
                remaining = {alias: target for alias, target in current.items() if target != version}
                _write_atomic(directory / "aliases.json", json.dumps(remaining, sort_keys=True).encode())
            versions = directory / "versions"
            os.replace(versions / f"v{version}.json", versions / f"v{version}{DELETED}")
        return dropped

    def _create_version(self, directory: Path, info: VersionInfo) -> None:
        versions = directory / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        temporary = versions / f".v{info.version}.{os.urandom(16).hex()}.tmp"
        # Metadata is the user's: a value JSON can't hold (a tensor, a path) is kept as its str().
        with open(temporary, "xb") as handle:
            handle.write(json.dumps(info.to_json(), sort_keys=True, indent=1, default=str).encode())
            sync_file(handle)  # never a version file that a power cut leaves empty
        try:
            os.link(temporary, versions / f"v{info.version}.json")  # fails if that version exists
        except FileExistsError:
            raise ArtifactError(f"artifact {info.project}/{info.name}:v{info.version} was created by another "
                                "process at the same moment; log it again") from None
        finally:
            temporary.unlink()
        sync_directory(str(versions))

    def set_aliases(self, project: str, name: str, version: int, add: list[str], remove: list[str]) -> None:
        """Give ``version`` the aliases ``add`` (moving them from other versions) and drop ``remove``."""
        custom = custom_aliases(add)
        with self._locked_version(project, name, version) as directory:
            current = self._aliases(directory)
            current.update({alias: version for alias in custom})
            for alias in remove:
                if current.get(alias) == version:
                    del current[alias]
            _write_atomic(directory / "aliases.json", json.dumps(current, sort_keys=True).encode())

    def edit_version(self, project: str, name: str, version: int, edit: VersionEdit) -> VersionInfo:
        """Apply ``edit`` (checked already: ``VersionEdit.checked``) to ``project/name:v<version>``
        holding the collection's lock: its description, metadata and tags in its version file
        (replaced atomically; its files, digest and manifest never change), then its aliases as
        ``set_aliases`` moves them. Returns the version after."""
        with self._locked_version(project, name, version) as directory:
            path = directory / "versions" / f"v{version}.json"
            info = self._read(directory, project, name, version, {}, -1)
            if edit.changes_fields:
                tags = edit.applied_tags(info.tags)
                if len(tags) > MAX_TAGS:
                    raise ArtifactError(f"artifact {project}/{name}:v{version} would have {len(tags)} tags; a version "
                                        f"has at most {MAX_TAGS}")
                # The file as it is, with only the edited keys replaced: a key a newer tracklet wrote stays.
                document = json.loads(path.read_bytes())
                document.pop("tags", None)
                document.update({"tags": tags} if tags else {})
                if edit.description is not None:
                    document["description"] = edit.description
                if edit.changes_metadata:
                    document["metadata"] = edit.applied_metadata(info.metadata or {}, f"artifact {project}/{name}:v{version}")
                _write_atomic(path, json.dumps(document, sort_keys=True, indent=1, default=str).encode())
            if edit.add_aliases or edit.remove_aliases:
                current = self._aliases(directory)
                current.update({alias: version for alias in edit.add_aliases})
                for alias in edit.remove_aliases:
                    if current.get(alias) == version:
                        del current[alias]
                _write_atomic(directory / "aliases.json", json.dumps(current, sort_keys=True).encode())
        return self.version(project, name, f"v{version}")

    # ------------------------------------------------------------ whole collections

    @contextlib.contextmanager
    def _locked_collection(self, project: str, name: str,
                           check: Callable[[None, list[int]], None] | None) -> Iterator[list[int]]:
        """Hold the collection's lock while it has versions (``ArtifactNotFound`` saying why if
        none), ``check(None, numbers)`` first; yields the version numbers."""
        directory = self.collection_dir(project, name)
        with self._locked(directory):
            numbers = self._version_numbers(directory)
            if not numbers:
                raise self._not_found(project, name, None)
            if check is not None:
                check(None, numbers)
            yield numbers

    def delete_collection(self, project: str, name: str, *,
                          check: Callable[[None, list[int]], None] | None = None) -> tuple[list[VersionInfo], dict[str, int]]:
        """Delete every version of ``project/name`` and its aliases (W&B's
        ``ArtifactCollection.delete()``): each version file becomes a tombstone, as
        ``delete_version`` leaves it (numbers are never given again, should the name be logged to
        later). ``check(None, numbers)`` runs under the collection's lock before anything changes
        (raising refuses it all). Returns (the versions deleted, the aliases dropped: alias ->
        version). Their files stay stored until ``tracklet artifact gc``."""
        directory = self.collection_dir(project, name)
        with self._locked_collection(project, name, check) as numbers:
            aliases = self._aliases(directory)
            infos = [self._read(directory, project, name, number, aliases, numbers[-1]) for number in numbers]
            if aliases:
                _write_atomic(directory / "aliases.json", b"{}")
            with contextlib.suppress(FileNotFoundError):  # its description and tags go with it
                (directory / COLLECTION_FILE).unlink()
            versions = directory / "versions"
            for number in numbers:
                os.replace(versions / f"v{number}.json", versions / f"v{number}{DELETED}")
            sync_directory(str(versions))
        return infos, aliases

    def set_type(self, project: str, name: str, type: str, *,
                 check: Callable[[None, list[int]], None] | None = None) -> str:
        """Give every version of ``project/name`` the artifact type ``type`` (W&B's
        ``ArtifactCollection.change_type``): ``update_collection`` with the type alone. Returns
        the old type."""
        return self.update_collection(project, name, CollectionEdit(type=type), check=check)[0]

    def collection_fields(self, project: str, name: str) -> CollectionFields:
        """The collection's own description and tags (empty if never edited); ``ArtifactError``
        if its file is damaged."""
        path = self.collection_dir(project, name) / COLLECTION_FILE
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_COLLECTION_FILE_BYTES + 1)
        except FileNotFoundError:
            return CollectionFields()
        try:
            if len(data) > MAX_COLLECTION_FILE_BYTES:
                raise ValueError(f"over {MAX_COLLECTION_FILE_BYTES:,} bytes")
            document = json.loads(data)
        except ValueError as error:
            raise ArtifactError(f"{path} is damaged: {error}") from None
        return CollectionFields.from_json(document, str(path))

    def update_collection(self, project: str, name: str, edit: CollectionEdit, *,
                          check: Callable[[None, list[int]], None] | None = None) -> tuple[str, CollectionFields]:
        """Apply ``edit`` (W&B's ``ArtifactCollection.save()``) under the collection's lock, both
        or neither: every field is checked first (the error names the field or tag at fault; tags
        added past ``MAX_TAGS`` too), and ``check(None, numbers)`` runs under the lock when the
        type changes (raising refuses it all); only then does anything change. A new type is
        written into every version file (replaced atomically, synced), so a version logged
        meanwhile waits and is then refused for its old type, as a collection keeps one type; the
        description and tags go to the collection's own file (replaced atomically), tags added
        and removed against what is stored now, so concurrent edits of different tags all land.
        ``ArtifactNotFound`` for a collection without versions. Returns (the old type, the fields
        as stored). A crash between the version files leaves types to mix; the call again fixes it."""
        what = f"artifact collection {project}/{name}"
        edit = edit.checked(what)
        directory = self.collection_dir(project, name)
        with self._locked_collection(project, name, check if edit.type is not None else None) as numbers:
            kept = numbers if edit.type is not None else numbers[-1:]
            infos = [self._read(directory, project, name, number, {}, numbers[-1]) for number in kept]  # damaged: refused
            fields = self.collection_fields(project, name)
            if edit.changes_fields:
                fields.tags = edit.applied_tags(fields.tags, what)
                if edit.description is not None:
                    fields.description = edit.description
                fields.updated_at = time.time()
            for info in infos if edit.type is not None else []:
                if info.type != edit.type:
                    path = directory / "versions" / f"v{info.version}.json"
                    document = json.loads(path.read_bytes())
                    document["type"] = edit.type
                    _write_atomic(path, json.dumps(document, sort_keys=True, indent=1, default=str).encode())
            if edit.changes_fields:
                _write_atomic(directory / COLLECTION_FILE, json.dumps(fields.to_json(), sort_keys=True).encode())
        return infos[-1].type, fields
