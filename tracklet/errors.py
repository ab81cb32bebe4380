"""Every exception and warning tracklet raises for a user to see, with one common base.

``except tracklet.TrackletError`` catches any of them. Each class keeps the standard base it
had before this module existed (``LookupError``, ``ValueError``, ``ImportError``, ...), so
``except LookupError`` and the like keep working, and each is still importable from the module
that raises it (``tracklet.core.api.RunNotFound``, ``tracklet.store.query.RunNotIndexed``, ...).

This module imports only the standard library: the CLI matches errors against these classes
without importing the store, the server or protobuf. The W&B compatibility layer's
``wandb.errors`` classes (``tracklet/compat/wandb/errors.py``) keep W&B's own hierarchy.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "PricesError",
    "BlobNotHeld",
    "BlobCollected",
    "TrialPruned",
    "MediaError",
    "ArtifactError",
    "ArtifactNotLinked", "ArtifactFinalized",
    "ArtifactNameError",
    "ArtifactDeleted", "ArtifactNotFound", "ArtifactTypeMismatch",
    "ArtifactVerifyError",
    "AuditUnavailable",
    "AuthError",
    "BadRequest",
    "ChunkCorrupt",
    "ChunkMissing",
    "ChunkStoreError",
    "DigestMismatch",
    "FilterSyntaxError",
    "IndexerBusy",
    "InvalidName",
    "MissingDependency",
    "MissingDriver",
    "NameConflict",
    "NotAWandbFile",
    "OffsetConflict",
    "OtlpError",
    "OtlpTooLarge",
    "SpanWriterBusy",
    "PackCorrupt",
    "RecipeError",
    "RecordLogError",
    "ReportConflict",
    "ReportError",
    "ReportNotFound",
    "RecordOverBudget",
    "RecordRejected",
    "RegistryError",
    "PromotionRequired",
    "QueryTimeout",
    "PromotionCheckRequired",
    "PromotionReviewRefused",
    "AliasMoved",
    "LinkedVersionDeleted",
    "RegistryForbidden",
    "RegistryUnavailable",
    "RemoteError",
    "ReproduceError",
    "ReadOnlyDataRoot",
    "RunNotFound",
    "RunNotIndexed",
    "SourceError",
    "ArtifactRootRefused",
    "SweepError",
    "SweepNotFound",
    "SweepSpecError",
    "StoreUnavailable",
    "SyncError",
    "ResumeError",
    "TableError",
    "TableNotFound",
    "TrackletError",
    "TrackletWarning",
    "TrainingIncomplete",
    "Unsupported",
    "Unrecordable",
    "UnsupportedReference",
]


class TrackletError(Exception):
    """The base of every error tracklet raises on purpose (as opposed to a bug)."""


class TrackletWarning(UserWarning):
    """Something tracklet could not record as asked; the run goes on."""


# ---------------------------------------------------------------- recording (tracklet.core)


class Unsupported(TrackletError, TypeError):
    """A value tracklet cannot record."""


class Unrecordable(TrackletError, ValueError):
    """A value of a supported kind that can't be recorded as it is (too large, nested too deep,
    containing itself); the message says why and where."""


class RecordOverBudget(TrackletError):
    """Raised by the history encoder, and caught by the sender, when the rows being encoded into
    one record carry more structured values and strings than one record may: the sender encodes
    them again in smaller records, of ``fit`` rows first (how many would fit, estimated from the
    bytes counted so far; 0 when unknown); ``row`` is the row whose value passed the budget."""

    def __init__(self, row: int, fit: int = 0) -> None:
        super().__init__(f"the record's structured values and strings passed its budget at row {row}")
        self.row = row
        self.fit = fit


class InvalidName(TrackletError, ValueError):
    """A project name or run id that cannot become a directory name (``..``, a ``/``, a NUL, empty,
    too long...): the message names the problem."""


class RecordLogError(TrackletError):
    """The file is not a tracklet record log, or is already being written."""


class RecordRejected(TrackletError, ValueError):
    """A record that consumers of the log must not fold: the message says what is wrong."""


# ---------------------------------------------------------------- reading (Api, export, store)


class RunNotFound(TrackletError, LookupError):
    """No run matches the path, id or name asked for (or more than one does)."""


class MissingDependency(TrackletError, ImportError):
    """An optional dependency an export format needs is not installed."""


class MissingDriver(TrackletError, ImportError):
    """The database driver a store URL needs is not installed."""


class StoreUnavailable(TrackletError, RuntimeError):
    """The store's database can't be opened: nothing listens at its URL, the database doesn't
    exist, the login is refused, or a SQLite file can't be opened."""


class ReadOnlyDataRoot(TrackletError, PermissionError):
    """A command needs to write a data root (or a file in it) that this user can't write (a
    read-only mount, another user's directory): ``str()`` names the directory and what to do.
    Reading such a root needs no writing (docs/store.md, "A read-only data root")."""


class IndexerBusy(TrackletError, RuntimeError):
    """Another process is indexing this data root."""


class QueryTimeout(TrackletError, ValueError):
    """A listing of runs whose filter ran past the store's time limit for one statement
    (``Store.filter_timeout``, ``$TRACKLET_STORE_FILTER_TIMEOUT``): ``str()`` names the project, the
    filter and the sort; a server answers it with a 400 (a request that would fail again as sent)."""


class RunNotIndexed(TrackletError, LookupError):
    """The store has no row for the run asked for."""


class FilterSyntaxError(TrackletError, ValueError):
    """A filter or sort that cannot be parsed: ``str()`` names the problem, its column and a caret.

    Attributes: ``problem`` (the first part of the message), ``text``, ``pos`` (0-based index into
    ``text``), ``column`` (``pos + 1``) and ``hint`` (extra advice or None).
    """

    def __init__(self, problem: str, text: str, pos: int, hint: str | None = None):
        self.problem, self.text, self.pos, self.hint = problem, text, pos, hint
        self.column = pos + 1
        shown = re.sub(r"[\r\n\t\f\v]", " ", text)
        head = f"{problem} at column {self.column}: "
        lines = [head + shown, " " * (len(head) + pos) + "^"]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))

    def __reduce__(self) -> Any:
        return (type(self), (self.problem, self.text, self.pos, self.hint))


# ---------------------------------------------------------------- server and client


class RemoteError(TrackletError, RuntimeError):
    """The server refused a request or could not be reached."""


class RegistryForbidden(RemoteError):
    """A server's registry refused the caller (HTTP 403): no role in it, or not the one needed."""


class SyncError(RemoteError):
    """A run could not be uploaded (server unreachable for too long, or a refusal)."""


class ResumeError(RemoteError):
    """An online run to resume could not be fetched from its server: the server was unreachable,
    refused, or answered bytes that are not an intact record log. Nothing was written locally."""


class AuthError(TrackletError, LookupError):
    """An administrative request that names a user or key that doesn't exist (HTTP 404)."""


class BadRequest(TrackletError, ValueError):
    """The request can't be applied as sent (HTTP 400)."""


class OffsetConflict(TrackletError):
    """The request doesn't fit what is stored (HTTP 409); ``offset`` is where to resend from."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class NameConflict(TrackletError):
    """The name can't be stored beside an existing one (a file where a directory is needed, or
    the reverse, on a local directory): HTTP 409."""


# ---------------------------------------------------------------- artifacts (tracklet.artifacts)


class ArtifactError(TrackletError):
    """An artifact could not be built, stored, found or materialized: the message names the
    artifact and the file at fault."""


class ArtifactNameError(ArtifactError, ValueError):
    """An artifact name, alias or a path inside an artifact that is not allowed (``/`` or ``..``
    in an artifact name; ``..``, an absolute path or NUL in a file's name)."""


class ArtifactNotFound(ArtifactError, LookupError):
    """No artifact version matches the name, alias or version asked for."""


class ArtifactDeleted(ArtifactNotFound):
    """The version asked for existed and was deleted (a server's 410: a deletion sent again after
    its answer was lost finds its work done)."""


class ArtifactTypeMismatch(ArtifactNotFound, ValueError):
    """The version a reference names is of another type than the one asked for
    (``use_artifact("mnist:latest", type="model")`` of a ``dataset``): no version of that type
    matches, so it is an ``ArtifactNotFound``, and a ``ValueError`` as W&B raises there.
    ``asked`` and ``found`` are the two types; ``name`` the version's qualified name."""

    def __init__(self, message: str, *, asked: str = "", found: str = "", name: str = "") -> None:
        super().__init__(message)
        self.asked, self.found, self.name = asked, found, name

    @classmethod
    def of(cls, name: str, found: str, asked: str) -> ArtifactTypeMismatch:
        """``artifact NAME has type 'FOUND', not 'ASKED'``: the one message every lookup raises."""
        return cls(f"artifact {name} has type {found!r}, not {asked!r}", asked=asked, found=found, name=name)

    def __reduce__(self) -> Any:
        return (_type_mismatch, (str(self), self.asked, self.found, self.name))


def _type_mismatch(message: str, asked: str, found: str, name: str) -> ArtifactTypeMismatch:
    return ArtifactTypeMismatch(message, asked=asked, found=found, name=name)


class ArtifactNotLinked(ArtifactError, ValueError):
    """``unlink()`` on an artifact version that isn't a registry collection's version (a link):
    there is no link to remove (W&B raises ``ValueError`` there too); ``delete()`` deletes a version."""


class ArtifactFinalized(ArtifactError):
    """A file added to or removed from a draft after ``finalize()`` (W&B's
    ``ArtifactFinalizedError``): the draft takes no more changes; log it as it is."""


class ArtifactVerifyError(ArtifactError):
    """Files that don't match the manifest: ``problems`` maps each file's path in the artifact
    to what is wrong with it (``digest mismatch``, ``missing``, ``not in the manifest``)."""

    def __init__(self, message: str, problems: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.problems = dict(problems or {})

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.problems))


class UnsupportedReference(ArtifactError, NotImplementedError):
    """``add_reference`` with a URI scheme this version cannot record (s3://, gs://, file:// and http(s):// are recorded)."""


# ---------------------------------------------------------------- importers and integrations


class SourceError(TrackletError):
    """A source that can't be imported (not found, not the expected format, a run id conflict)."""


class ArtifactRootRefused(TrackletError, ValueError):
    """An imported store's artifact location on this machine's disk is outside the directories the
    import may read (``tracklet import mlflow --artifact-root``): those files are not imported."""


class NotAWandbFile(TrackletError, ValueError):
    """The file doesn't start with W&B's datastore header."""


class TrainingIncomplete(TrackletError, RuntimeError):
    """Why a run the callback started is ``failed`` when ``trainer.train()`` never reached
    ``on_train_end`` and the exception that stopped it was caught by the caller."""


# ---------------------------------------------------------------- artifacts: chunk-level dedupe
# (tracklet.artifacts.chunking, tracklet.artifacts.packs)


class RecipeError(TrackletError, ValueError):
    """A file recipe (from a manifest, a server, a file) is malformed: names the field at fault."""


class ChunkStoreError(TrackletError):
    """A chunk or a pack can't be stored or read back as asked."""


class ChunkMissing(ChunkStoreError, LookupError):
    """No pack holds a chunk a recipe needs (or the pack the index names is gone)."""


class ChunkCorrupt(ChunkStoreError, ValueError):
    """A chunk's bytes don't hash to its id (in a pack, or in a file changed since it was cut)."""


class PackCorrupt(ChunkStoreError, ValueError):
    """A pack's footer or index is malformed, or its index doesn't hash to its name."""


class DigestMismatch(ChunkStoreError, ValueError):
    """A file rebuilt from chunks doesn't have the recipe's size and sha256."""


# ---------------------------------------------------------------- sweeps (tracklet.sweeps)


class SweepError(TrackletError, RuntimeError):
    """A sweep can't go on as asked (an agent whose command keeps failing, a trial that can't start)."""


class SweepSpecError(TrackletError, ValueError):
    """A sweep configuration that doesn't validate; each line names the field at fault
    (``parameters.lr.min: must be < max``). ``problems`` holds the lines."""

    def __init__(self, problems: "list[str] | str") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid sweep config:\n  " + "\n  ".join(self.problems) if len(self.problems) > 1
                         else f"invalid sweep config: {self.problems[0]}")

    def __reduce__(self) -> Any:
        return (type(self), (self.problems,))


class SweepNotFound(TrackletError, LookupError):
    """No sweep with that id under the data root."""


class TrialPruned(TrackletError):
    """Raised inside a trial's function (``wandb.agent``/``Agent.run_function``) when the sweep's
    pruner stops the trial: the trial is told pruned, not failed."""


# ---------------------------------------------------------------- media and tables (tracklet.media)


class MediaError(TrackletError, ValueError):
    """A logged media item that can't be recorded as given (the worker's warning says why)."""


class BlobNotHeld(TrackletError, LookupError):
    """The project holds no such artifact blob or upload session on the server (404)."""


class BlobCollected(TrackletError, RuntimeError):
    """A blob a server was storing was removed by its garbage collection meanwhile (the upload found
    it stored and sent no bytes to write): nothing was granted; the client sends it again (503)."""



class TableError(TrackletError, ValueError):
    """A table operation that can't be done as asked (a column of the wrong length, a duplicate or
    reserved column name, an unknown log mode): the message names the table and the problem."""


class TableNotFound(TrackletError, LookupError):
    """The run logged no table under the key asked for (at or before the step asked for)."""


# ---------------------------------------------------------------- the model registry (tracklet.registry)


class AuditUnavailable(TrackletError):
    """A server change's audit event could not be written in the change's transaction, so the
    change rolled back: nothing changed (HTTP 503; docs/audit.md)."""


class RegistryError(ArtifactError):
    """A registry operation that can't be done as asked (a link, an alias move, a card, a
    promotion request): the message names the collection and the problem."""


class PromotionRequired(RegistryError):
    """The alias is protected: moving it takes a promotion request approved by others
    (``tracklet registry request``); the message names the request that was opened."""

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class AliasMoved(RegistryError):
    """The alias no longer names the version the caller read (someone moved or removed it since):
    nothing was changed (a server answers 409); read the alias again and decide anew."""


class LinkedVersionDeleted(RegistryError):
    """The registry version's artifact version was deleted (``break_registry_links``): its files
    are gone, so it can't be guarded (an alias protected on it, a promotion opened onto it); a
    server answers 409. Protect or promote a version that has its files."""


class RegistryUnavailable(RegistryError):
    """The registry's database refused a change (unreachable, a constraint, or what commits with
    it, such as a server's audit event, could not be written): it rolled back, nothing changed."""


class PromotionCheckRequired(RegistryError):
    """This approval would complete a promotion whose alias needs a passing check first
    (``ModelRegistry.review(..., checked=False)``): nothing was recorded; run the check, then
    review again with ``checked=True``. A server does this itself (docs/registry.md)."""


class PromotionReviewRefused(RegistryError):
    """This reviewer may not review this promotion request: it is their own, or the alias's
    protection takes approvals from a registry role they don't hold (a server answers 403); the
    message names the request, the role needed and the reviewer's."""


class OtlpError(TrackletError, ValueError):
    """A body sent to ``/v1/traces`` that is not an OTLP trace export request (the server answers
    400), or has a content type other than OTLP's protobuf or JSON (415): the message says which."""


class OtlpTooLarge(OtlpError):
    """An OTLP/JSON body the receiver won't parse whole: more than ``MAX_SPANS`` spans (with its
    resources and scopes) in one request, or one span whose parse would take more memory than
    ``tracklet/tracing/otlp_json.py`` allows one value (the server answers 413 and stores nothing)."""


class SpanWriterBusy(TrackletError, RuntimeError):
    """Spans received over OTLP were not taken: the store's span writer had no room in its queue
    for too long (``tracklet/store/spans_writer.py``; the server answers 503 with Retry-After)."""


class PricesError(TrackletError, ValueError):
    """A data root's ``prices.json`` (LLM prices, ``tracklet/store/prices.py``) that can't be used:
    the message names the file and the entry at fault."""


class ReproduceError(TrackletError, RuntimeError):
    """A run can't be reproduced as asked (recorded outside git, its commit or an input artifact
    gone, the diff no longer applies, the target directory not empty): the message names the part
    that can't be restored and why (``tracklet reproduce``, docs/reproduce.md)."""


# ---------------------------------------------------------------- reports (tracklet.reports)


class ReportError(TrackletError, ValueError):
    """A report operation that can't be done as asked (a document over its size limit, a bad
    version number, a request a server refused): the message names the report and the problem.
    A bad panel spec is not one: it is the error of that panel only (docs/reports.md)."""


class ReportNotFound(ReportError, LookupError):
    """No such report (in that project), or no such version of it."""


class ReportConflict(ReportError):
    """A change that would overwrite someone else's: the save's parent is no longer the latest
    version, or the report is published (published reports are immutable); the server answers 409."""
