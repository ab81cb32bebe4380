"""The server's JSON contract: one pydantic model per response body, and the one error body.

Every JSON route declares its model here (``response_model`` or its return annotation), so
``/openapi.json`` describes what goes over the wire and the dashboard's TypeScript types are
generated from it (``scripts/gen_api_types.sh`` writes ``web/src/api-types.ts``). Field order
is the order of the JSON objects. Numbers: the JSON is strict, so NaN and ±inf are the strings
``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (tracklet's one policy, ``core/jsonsafe.py``), and
``null`` in a metric array is "no value", which is why metric arrays are
``list[int | float | NonFinite | None]``; an integer stays an integer (``3``, not ``3.0``), which
is why numbers that may be either are ``int | float``.

A field typed ``T | Absent`` is left out of the body when it doesn't apply (a run listing's rows
have no ``keys``; exact points have no ``min``), never sent as ``null``: the schema says it is
optional, and TypeScript reads ``name?: T``.

``ErrorResponse`` is every error's body (``{"detail": "..."}``), declared per route with
``errors(...)``; a 409 on an upload adds the stored ``offset``. The one exception is FastAPI's
own 422 for a request that doesn't match the route's parameters (``HTTPValidationError``, whose
``detail`` is a list of problems).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from fastapi.responses import Response
from pydantic import BaseModel, Field, PlainSerializer, TypeAdapter
from pydantic.json_schema import SkipJsonSchema
from tracklet.artifacts.fields import MAX_UNSET_METADATA_KEYS

# Every integer a request carries is bounded within a signed 64-bit integer (what databases store),
# so a number past it is a 422 naming the parameter, never a driver overflow (a 500).
INT64_MAX = 2**63 - 1
#: The largest integer a JavaScript number holds exactly (Number.MAX_SAFE_INTEGER).
JS_SAFE_MAX = 2**53 - 1


def _exact_in_json(value: int) -> int | str:
    return value if -JS_SAFE_MAX <= value <= JS_SAFE_MAX else str(value)


#: A step (a 64-bit integer) in a JSON answer a browser reads: a JSON integer up to 2**53 - 1 in size,
#: past that its decimal digits as a string, so JavaScript's JSON.parse doesn't round it to a float
#: (2**53 + 1 read back as 2**53). The dashboard compares them as BigInts (web/src/format.ts).
JsonStep = Annotated[int, PlainSerializer(_exact_in_json, return_type=int | str, when_used="json")]
RowId = Annotated[int, Path(ge=1, le=INT64_MAX, description="A row id (a database's 64-bit integer)")]

NonFinite = Literal["NaN", "Infinity", "-Infinity"]  # NaN, +inf, -inf in strict JSON (core/jsonsafe.py)
Numbers = list[int | float | NonFinite | None]  # a metric array: null is no value (an empty bucket)
# A field that is left out of the body when it doesn't apply (never sent as null): `name?: T` in TypeScript.
Absent = SkipJsonSchema[None]


class ErrorResponse(BaseModel):
    """Every error's body: what went wrong and, where it helps, what to do instead."""

    detail: str


class OffsetConflictResponse(ErrorResponse):
    """409 on an upload: the body doesn't continue the server's copy; resume at ``offset``."""

    offset: int


_ERROR_DESCRIPTIONS = {
    400: "Bad request: an invalid name, filter, sort, parameter or body",
    401: "Missing, malformed, wrong or revoked API key",
    403: "The key's user lacks the role this needs",
    404: "No such project, run, file, user or key",
    409: "Conflicts with what the server holds",
    410: "It was there and was deleted (a retried deletion finds its work done)",
    412: "The body does not hash to the X-Tracklet-Sha256 it was sent with (changed while sent): nothing was stored",
    413: "Request body too large (on the wire or decompressed)",
    415: "Unsupported Content-Encoding",
    416: "The requested byte range is outside the blob",
    500: "Stored data could not be read (a damaged or missing file, a missing optional package); the detail names it",
    503: "The server's database refused the change (it rolled back: nothing changed); the detail names why",
}


_UNTYPED = TypeAdapter(dict[str, Any])


def json_response(content: dict[str, Any]) -> Response:
    """``content`` serialised as it is, not validated against the route's model: for the big
    bodies (metric histories, run listings), where checking millions of numbers against
    ``Numbers`` costs several times the serialising (docs/server.md has the figures). The bytes
    are the ones FastAPI writes for a validated model (pydantic-core's JSON; non-finite numbers are
    already their strings, ``jsonsafe.json_floats``);
    tests validate real responses of these routes against their models."""
    return Response(_UNTYPED.dump_json(content), media_type="application/json")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each an ``ErrorResponse``."""
    return {status: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[status]} for status in statuses}


# ---------------------------------------------------------------------------------- server


class HealthResponse(BaseModel):
    status: str  # "ok"
    version: str  # the server's tracklet version


# ---------------------------------------------------------------------------------- ingest


class OffsetResponse(BaseModel):
    """Where the server's copy of the run's record log ends: the next request starts here."""

    offset: int
    part: str | None = Field(None, description="With `part=`: the shared run's part (secondary writer's label) "
                             "this offset is of, echoed (a server that ignores `part=` would answer of the run's "
                             "own log: clients upload a part only where it is echoed; docs/shared-runs.md)")


class AppendResponse(OffsetResponse):
    appended: int = Field(description="Bytes newly stored by this request (0 for a pure resend)")


class PrimaryClaimRequest(BaseModel):
    """A shared run's writer asking to be its primary (docs/shared-runs.md, "Claiming the primary")."""

    token: str = Field(pattern=r"^[A-Za-z0-9_-]{16,64}$",
                       description="The writer's random identity (16-64 letters, digits, `_`, `-`): the same "
                       "token claiming again is granted again; never shown to anyone")
    host: str = Field("", max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$",
                      description="The writer's host name (no control characters), shown to a writer that is refused")
    pid: int = Field(0, ge=0, le=2**31 - 1, description="The writer's process id, shown likewise")
    resume: bool = Field(False, description="The writer continues the run (W&B's `resume=`): it may take the "
                         "primary of a run the server holds once its holder is no longer live")


class PrimaryHolder(BaseModel):
    host: str
    pid: int
    claimed_at: float = Field(description="When it claimed the primary (epoch seconds)")


class PrimaryClaimResponse(BaseModel):
    """A granted claim (200): the claimant holds the run's primary and starts as it."""

    primary: bool = Field(description="True: the claimant holds the run's primary")
    holder: PrimaryHolder = Field(description="The claimant, as the server recorded it")
    state: str | None = Field(description="The run's state on the server (`running`, `finished`, `failed`, "
                              "`crashed`); null while the server holds none of its log (a new run)")
    offset: int = Field(description="The size of the server's copy of the run's own log (0: none yet; more: the "
                        "claimant resumes the run from it)")


class PrimaryHeldResponse(ErrorResponse):
    """A refused claim (409): another writer holds the run's primary, or the run exists and the
    claim doesn't resume it. The claimant starts as a secondary writer."""

    primary: bool = Field(description="False: the claimant doesn't hold the run's primary")
    holder: PrimaryHolder | None = Field(description="Who holds it; null: a run whose primary never claimed it "
                                         "(started by an older client, or an offline run synced)")
    live: bool = Field(description="Whether the holder counts as writing the run: its claim is younger than the "
                       "server's heartbeat lapse, or the run's log is running and grew within it")
    state: str | None = Field(description="The run's state on the server; null while it holds none of its log")
    offset: int = Field(description="The size of the server's copy of the run's own log")


# ---------------------------------------------------------------------------------- read


class Project(BaseModel):
    name: str
    runs: int


class ProjectsResponse(BaseModel):
    projects: list[Project]


class RunUser(BaseModel):
    """Who created a run (server/run_creators.py)."""

    name: str
    verified: bool = Field(
        description="True: the user of the API key that started the run's upload, as the server "
        "authenticated it. False: the OS user name the client recorded (a server without keys, --dev)")


class RunRow(BaseModel):
    """A run's store row. A listing leaves out `keys` and `metadata`; one run's row has them."""

    run_id: str
    name: str
    state: str  # running, finished, failed, crashed
    tags: list[str]
    group_name: str
    job_type: str
    notes: str
    host: str
    created_at: float | None
    updated_at: float | None  # time of the last record ingested
    heartbeat_at: float | None  # when the store last saw the log grow
    exit_code: int | None
    config: dict[str, Any]
    summary: dict[str, Any]
    keys: list[str] | Absent = Field(None, description="The keys the run logged (one run's row only)")
    last_step: int | None
    metadata: dict[str, Any] | Absent = Field(
        None,
        description="How and where it ran: command, cwd, pid, python, platform, git, cpu, memory, gpu "
        "(one run's row only)")
    path: str  # project/run_id
    user: RunUser | None = Field(
        None, description="Who created the run; null for a run uploaded before the server recorded "
        "users (migration s0016) or, on a server without keys, one whose client recorded no user name")


class RunsResponse(BaseModel):
    runs: list[RunRow]


class RunResponse(BaseModel):
    run: RunRow


class Series(BaseModel):
    """One (run, key) series of a run's history or system metrics: exact points (`x`, `steps`,
    `values`) or buckets (`x`, `steps`, `first_steps`, `min`, `max`, `last`, `count`,
    `nonfinite`). `run` is the run's path (project/run_id). NaN and ±inf are "NaN", "Infinity",
    "-Infinity"."""

    run: str
    key: str
    exact: bool
    stat: str | Absent = Field(None, description="System metrics only: mean or max (of each window)")
    x: Numbers
    steps: list[int]
    values: Numbers | Absent = None
    bools: list[int] | Absent = Field(None, description="Exact points only: the indices of the values logged as "
                                      "booleans (given as 1 and 0 in `values`); left out when none was. A value "
                                      "logged as an int is a JSON integer, exact past 2**53 too")
    first_steps: list[int] | Absent = None
    min: Numbers | Absent = None
    max: Numbers | Absent = None
    last: Numbers | Absent = None
    count: list[int] | Absent = None
    nonfinite: list[int] | Absent = None


class HistoryResponse(BaseModel):
    series: list[Series]


class CompareSeries(BaseModel):
    """One (run, key) series of many runs' histories, compact: `run` is the run id; `x` per
    point or bucket (in the unit of the request's `x`); `steps` too unless `x` is `step` (then
    it equals `x`); exact points have `values`, buckets `min`, `max` (over the bucket's finite
    values) and `last`. NaN and ±inf are "NaN", "Infinity", "-Infinity"."""

    run: str
    key: str
    exact: bool
    x: Numbers
    steps: list[int] | Absent = None
    values: Numbers | Absent = None
    bools: list[int] | Absent = Field(None, description="The indices of the values logged as booleans (1 and 0 "
                                      "in `values`); left out when none was")
    min: Numbers | Absent = None
    max: Numbers | Absent = None
    last: Numbers | Absent = None


class CompareHistoryResponse(BaseModel):
    """One entry per (run, key) that has points."""

    series: list[CompareSeries]


class MetricKeysResponse(BaseModel):
    """Metric keys with numeric points, sorted (`_timestamp` and other `_` keys left out)."""

    keys: list[str]


# ---------------------------------------------------------------------------------- run data


class ConsoleLine(BaseModel):
    seq: int
    time: float
    stream: str  # stdout or stderr
    text: str


class ConsoleResponse(BaseModel):
    """Lines oldest first. `next_after`: pass it as `after` to get only newer lines (every line up
    to it was considered); `last_seq`: the run's last line so far (0: none)."""

    lines: list[ConsoleLine]
    next_after: int
    last_seq: int


class Alert(BaseModel):
    seq: int
    time: float
    level: str  # INFO, WARN, ERROR
    title: str
    text: str


class AlertsResponse(BaseModel):
    """Alerts oldest first (`seq` from 1); pass the last `seq` as `after` to get only newer ones."""

    alerts: list[Alert]


class SystemNamesResponse(BaseModel):
    """The system metrics the run recorded (docs/system-metrics.md)."""

    names: list[str]


class SystemResponse(BaseModel):
    """`names`: every system metric the run has. `series`: per requested name and stat, `x` in
    seconds (`time`: since the epoch, `relative_time`: since the run started), `steps` in
    milliseconds since the epoch."""

    names: list[str]
    series: list[Series]


# ---------------------------------------------------------------------------------- tables


class TableKeysResponse(BaseModel):
    """The keys a run logged tables under (`tracklet.Table`, docs/tables.md), in first-log order."""

    keys: list[str]


class TableColumn(BaseModel):
    name: str
    type: str  # the Arrow type as pyarrow prints it: int64, double, string, bool, timestamp[us], ...


class TableChart(BaseModel):
    """The chart a table was logged with (W&B's `wandb.plot.*`; docs/wandb-compat.md#charts): its
    `kind` and the columns on each role (`x`, `y`, `series` splitting lines, `value` a confusion
    matrix's counts; "" where the kind has none)."""

    kind: str
    title: str
    x: str
    y: str
    series: str
    value: str
    x_title: str
    y_title: str
    spec: str
    fields: dict[str, str]
    chart_key: str


class TableRowsResponse(BaseModel):
    """One page of a logged table version (`run.table(key, step)` filtered, sorted and paged).
    `total`: rows matching the filter; `rows`: one list per row, values in `columns`' order (NaN
    and ±inf as "NaN", "Infinity", "-Infinity"; bytes as
    `{"_type": "bytes", "base64": ...}`; dates and times as text)."""

    key: str
    step: int  # the version's step (INCREMENTAL: its last increment's)
    log_mode: Literal["IMMUTABLE", "MUTABLE", "INCREMENTAL"]
    columns: list[TableColumn]
    total: int
    offset: int
    rows: list[list[Any]]
    chart: TableChart | None = None  # the chart the version was logged with (wandb.plot.*), if any


# ---------------------------------------------------------------------------------- files


class FileEntry(BaseModel):
    name: str
    size: int
    sha256: str
    updated_at: str | None  # ISO 8601, UTC


class FileList(BaseModel):
    files: list[FileEntry]


class PutFileResponse(FileEntry):
    written: bool = Field(description="False: the same bytes were already stored, nothing was written")


# ---------------------------------------------------------------------------------- artifacts (read)


class ArtifactCollection(BaseModel):
    """An artifact collection of a project: its versions share a name and a type."""

    name: str
    type: str
    versions: int = Field(description="How many versions it has")
    latest: str = Field(description="The latest version, e.g. `v3`")
    updated_at: float | None = Field(description="When the latest version was made (epoch seconds)")
    aliases: list[str] = Field(description="The latest version's custom aliases")
    description: str = Field(default="", description="The collection's own description (not a version's)")
    tags: list[str] = Field(default_factory=list, description="The collection's own tags (not a version's)")
    error: str | Absent = Field(default=None, description="Why the collection could not be read (damaged registry files)")


class ArtifactCollectionsResponse(BaseModel):
    collections: list[ArtifactCollection]


class ArtifactVersion(BaseModel):
    """One version of an artifact collection (its files never change; description, metadata, tags and
    aliases may be edited)."""

    project: str
    name: str
    version: str = Field(description="`vN`")
    index: int = Field(description="N of `vN`")
    type: str
    aliases: list[str] = Field(description="`vN`, `latest` if it is the latest, then custom aliases")
    digest: str = Field(description="sha256 over the sorted `path:digest` lines of its files")
    manifest: str = Field(description="sha256 of the manifest's bytes: a blob of the project (GET .../_blobs/{manifest})")
    size: int = Field(description="Bytes of all its files")
    file_count: int
    created_at: float | None
    logged_by: str | None = Field(description="`project/run_id` of the run that logged it, if a run did")
    description: str
    metadata: dict[str, Any]
    history_step: int | None = Field(default=None, description=(
        "The logging run's last history step when it logged the version (W&B's `history_step`); null if "
        "logged outside a run or committed to a server before it kept it"))
    tags: list[str] = Field(default_factory=list, description="The version's tags (editable: PATCH)")


class DamagedVersion(BaseModel):
    version: str
    index: int
    detail: str = Field(description="What is wrong with its registry file")


class ArtifactVersionsResponse(BaseModel):
    project: str
    name: str
    type: str = Field(description="The type of the page's versions ('' if none could be read)")
    total: int = Field(description="Versions in all (a page holds at most `limit`, counting `damaged` ones)")
    versions: list[ArtifactVersion]
    damaged: list[DamagedVersion] = Field(description="Versions of the page that could not be read")


class LineageRun(BaseModel):
    project: str
    run_id: str
    name: str
    state: str


class ArtifactVersionResponse(BaseModel):
    version: ArtifactVersion
    logged_by: list[LineageRun] = Field(description="The run that logged it (from the store's lineage)")
    used_by: list[LineageRun] = Field(description="The runs that used it, first use first")


class ArtifactDirEntry(BaseModel):
    path: str = Field(description="The directory's path in the artifact")
    name: str
    files: int = Field(description="Files under it, at any depth")
    size: int = Field(description="Their bytes")


class ArtifactFileEntry(BaseModel):
    path: str
    name: str
    size: int
    digest: str = Field(description="sha256 of its bytes, or `blake3:` and the BLAKE3 of its bytes for a file "
                        "stored as chunks")
    ref: str | None = Field(description="A reference's URI (its bytes are not stored), else null")


class ArtifactFilesResponse(BaseModel):
    version: str
    dir: str
    q: str | None
    total: int = Field(description="Entries in the directory (or files matching `q`), all pages")
    offset: int
    dirs: list[ArtifactDirEntry]
    files: list[ArtifactFileEntry]
    next_offset: int | None = Field(description="Where the next page starts; null on the last page")


class RunArtifact(BaseModel):
    project: str
    name: str
    version: str
    index: int
    type: str
    digest: str
    aliases: list[str]
    time: float = Field(0.0, description="When the run logged or used it (seconds since the epoch)")


class RunArtifactsResponse(BaseModel):
    logged: list[RunArtifact]
    used: list[RunArtifact]


class LineageNode(BaseModel):
    """A run (`run_id`, `state`) or an artifact version (`version`, `type`, `aliases`); in a
    registered model's graph also the registry version (`registry`: `version`, `aliases`) and the
    code commits its runs ran (`commit`: `commit`, `branch`, `remote`, `dirty`)."""

    id: str = Field(description="`run:<project>/<run_id>`, `artifact:<project>/<name>:v<N>`, "
                    "`registry:<registry>/<collection>:v<N>` or `commit:<sha>`")
    kind: Literal["run", "artifact", "registry", "commit"]
    project: str
    name: str = Field(description="The run's display name, or the collection's name")
    depth: int = Field(description="Edges from the start node")
    run_id: str | Absent = None
    state: str | Absent = None
    version: str | Absent = None
    type: str | Absent = None
    aliases: list[str] | Absent = None
    commit: str | Absent = None
    branch: str | Absent = None
    remote: str | Absent = None
    dirty: bool | Absent = None
    files_deleted: bool | Absent = Field(default=None, description=(
        "An artifact version that was deleted (`tracklet artifact rm`; a registry version's with "
        "`break_registry_links`): it has no files and no aliases; the runs that logged and used it are still known"))


class LineageEdge(BaseModel):
    """Data flows from `source` to `target`: a run logged a version, a version was used by a run,
    a version was linked into a registry collection, or a commit's code ran in a run."""

    source: str
    target: str
    kind: Literal["logged", "used", "linked", "code"]


class LineageResponse(BaseModel):
    root: str = Field(description="The start node's id")
    hops: int
    truncated: bool = Field(description="Nodes or edges were left out to keep within max_nodes")
    nodes: list[LineageNode]
    edges: list[LineageEdge]


# ---------------------------------------------------------------------------------- accounts


class Me(BaseModel):
    user: str
    is_admin: bool
    auth: bool = Field(description="False on a --dev server (no keys)")
    key_id: str | None = None


class KeyRequest(BaseModel):
    label: str = Field("", max_length=256, description="What the key is for, e.g. 'laptop' or 'ci'")


class NewKeyResponse(BaseModel):
    """The key itself appears here once and is never shown again."""

    key: str
    key_id: str
    user: str
    label: str


class ApiKey(BaseModel):
    """An API key as listed: never its secret."""

    key_id: str
    user: str
    label: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


class ApiKeysResponse(BaseModel):
    keys: list[ApiKey]


class UserRequest(BaseModel):
    name: str = Field(..., min_length=1, max_length=128)
    admin: bool = False


class User(BaseModel):
    name: str
    is_admin: bool
    created_at: float
    disabled: bool


class UsersResponse(BaseModel):
    users: list[User]


class RoleRequest(BaseModel):
    role: str = Field(..., pattern="^(read|write|admin)$")


class Member(BaseModel):
    user: str
    role: str  # read, write or admin


class MembersResponse(BaseModel):
    members: list[Member]


# ---------------------------------------------------------------------------------- artifacts (upload)
# routes_artifacts_write.py: the content-addressed blobs of a project, resumable uploads, commits.


class BlobQuery(BaseModel):
    digests: list[str] = Field(description="sha256 digests (64 lowercase hex digits), or chunked files' "
                               "`blake3:<64 hex digits>`, at most 1,000")


class BlobQueryResponse(BaseModel):
    missing: list[str] = Field(description="The digests the project does not hold yet: upload these")


class ChunkQuery(BaseModel):
    chunks: list[str] = Field(description="Chunk ids (blake3, 64 lowercase hex digits), at most 1,000")
    stream: str | None = Field(None, description="With `segment`: the chunks are that segment of a file being "
                               "streamed (a random id of 32 lowercase hex digits), in file order, repeats included: "
                               "the server hashes the file (BLAKE3) as they arrive, so registering it with this stream "
                               "needs no read back")
    segment: int | None = Field(None, ge=0, description="The segment's number in its stream, from 0")


class ChunkQueryResponse(BaseModel):
    missing: list[str] = Field(description="The chunk ids the project does not hold yet: send these in packs")


class PutPackResponse(BaseModel):
    pack: str = Field(description="The pack's id (blake3 of its index and footer)")
    chunks: int = Field(description="Chunks the pack holds, each checked against its id")
    size: int = Field(description="Bytes received")


class FileRequest(BaseModel):
    digest: str = Field(description="The file's digest: `blake3:` and the BLAKE3 of its bytes (64 lowercase hex "
                        "digits); a sha256 from a client before that rule")
    size: int = Field(ge=0, description="The file's size in bytes")
    recipe: str = Field(description="sha256 of the file's recipe blob (its chunk ids and lengths), uploaded first")
    stream: str | None = Field(None, description="The stream its chunks were sent in (see the chunk query), if any")


class FileResponse(BaseModel):
    digest: str
    registered: bool = Field(description="False if the project held this file already")


class PutBlobResponse(BaseModel):
    digest: str
    size: int = Field(description="Bytes received (verified) for this blob")


class RejectedBlob(BaseModel):
    digest: str
    detail: str


class BatchResponse(BaseModel):
    stored: list[str] = Field(description="Digests stored (verified) and now held by the project")
    rejected: list[RejectedBlob] = Field(description="Blobs whose bytes don't match their digest: not stored")


class UploadRequest(BaseModel):
    digest: str
    size: int = Field(ge=0)
    part_size: int = Field(description="Bytes per part (5 MiB..64 MiB); the last part may be shorter")


class UploadPart(BaseModel):
    number: int
    size: int
    sha256: str


class UploadSession(BaseModel):
    """A resumable upload of one blob: the parts the server holds so far (received whole, verified)."""

    id: str
    digest: str
    size: int
    part_size: int
    part_count: int
    parts: list[UploadPart]


class CommitRequest(BaseModel):
    type: str
    manifest: str = Field(description="sha256 of the manifest's bytes, a blob uploaded to the project first")
    description: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    logged_by: str | None = Field(default=None, description="project/run_id of the run that logged it")
    history_step: int | None = Field(default=None, ge=0, le=1 << 62, description=(
        "The logging run's last history step when it logged the version (W&B's `history_step`)"))
    tags: list[str] = Field(default_factory=list, max_length=256, description=(
        "The version's tags: letters, digits, `_`, `-`, words separated by spaces (W&B's); kept only for a new "
        "version"))
    incremental_base: str | None = Field(default=None, max_length=64, description=(
        "An incremental version (W&B's `incremental=True`): the sha256 of the manifest blob of the version "
        "`manifest` was merged onto (a blob of the project), or \"\" if the collection had none. If the "
        "collection's latest version is another when the commit lands, the version's increment (files new or "
        "changed against that base, paths it dropped) is merged onto the latest instead, under the collection's "
        "lock"))
    commit_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$", description=(
        "32 lowercase hex digits the client drew once for the logged version: kept with the version this commit "
        "makes (or, making none as the latest had its content, with the version it answers), so the same commit "
        "sent again (its answer lost, a repeated sync) answers that version (`reused`), whatever landed since, "
        "while a new log of the same files, with a new id, is a new commit. A commit with an id may be retried "
        "safely"))


class CommitResponse(BaseModel):
    version: ArtifactVersion
    reused: bool = Field(description="The latest version had the same content: it was returned, no new version")


class VersionAliasesRequest(BaseModel):
    add: list[str] = Field(default_factory=list, max_length=1000,
                           description="Custom aliases to point at this version (moved from the version holding each)")
    remove: list[str] = Field(default_factory=list, max_length=1000,
                              description="Custom aliases to take off it (one naming another version now stays there)")


class VersionEditRequest(BaseModel):
    """An edit of a committed version (``artifact.save()``): each field left out stays as it is."""

    description: str | None = Field(default=None, max_length=65_536, description="Its new description")
    metadata: dict[str, Any] | None = Field(default=None, description=(
        "Its new metadata (replaces it whole, before the keys set and unset)"))
    set_metadata: dict[str, Any] | None = Field(default=None, description=(
        "Metadata keys to set, each to its value (keys not named stay, whoever set them meanwhile)"))
    unset_metadata: list[str] = Field(default_factory=list, max_length=MAX_UNSET_METADATA_KEYS, description=(
        "Metadata keys to remove (one it doesn't have: no error); at most 1,000, their JSON at most 4 MiB"))
    add_tags: list[str] = Field(default_factory=list, max_length=256, description="Tags to give it")
    remove_tags: list[str] = Field(default_factory=list, max_length=256, description="Tags to take off it")
    add_aliases: list[str] = Field(default_factory=list, max_length=1000,
                                   description="Custom aliases to point at it (moved from the version holding each)")
    remove_aliases: list[str] = Field(default_factory=list, max_length=1000, description=(
        "Custom aliases to take off it (one naming another version now stays there)"))


class VersionAliasesResponse(BaseModel):
    version: ArtifactVersion = Field(description="The version with its aliases after the change")


class VersionDeleteResponse(BaseModel):
    deleted: ArtifactVersion = Field(description="The version deleted, as it was")
    aliases_dropped: list[str] = Field(description="The custom aliases that went with it (`delete_aliases=true`)")
    registry_links_broken: list[str] = Field(default_factory=list, description=(
        "The model registry versions (`registry/collection:vN`) that linked it and are left without files "
        "(`break_registry_links=true`): they read back as `files_deleted`"))


class CollectionDeleteResponse(BaseModel):
    deleted: list[ArtifactVersion] = Field(description="The versions deleted, as they were, oldest first")
    aliases_dropped: list[str] = Field(description="The collection's custom aliases, gone with them")


class CollectionUpdateRequest(BaseModel):
    """A collection edit (``ArtifactCollection.save()``): each field left out stays as it is."""

    type: str | None = Field(default=None, max_length=128,
                             description="The artifact type every version of the collection gets (needs admin)")
    description: str | None = Field(default=None, max_length=65_536, description="The collection's own description")
    tags: list[str] | None = Field(default=None, max_length=256,
                                   description="The collection's own tags (replace its tags whole, before the "
                                               "tags added and removed)")
    add_tags: list[str] = Field(default_factory=list, max_length=256, description=(
        "Tags to give the collection, beside those it has when the edit lands"))
    remove_tags: list[str] = Field(default_factory=list, max_length=256, description=(
        "Tags to take off the collection (one it doesn't have: no error)"))


class CollectionUpdateResponse(BaseModel):
    name: str
    type: str = Field(description="The collection's type now")
    previous_type: str = Field(description="Its type before the change")
    description: str = Field(default="", description="The collection's own description now")
    tags: list[str] = Field(default_factory=list, description="The collection's own tags now")


# ---------------------------------------------------------------------------------- sweeps


class SweepMetric(BaseModel):
    name: str
    goal: str  # minimize or maximize


class SweepBest(BaseModel):
    """The best complete trial so far: its number, objective value and run."""

    trial: int
    value: float
    run_id: str | None


class SweepSummary(BaseModel):
    """A sweep as listed. `state`: running, paused, stopped or finished (nothing runs and the run
    cap or the grid is exhausted). `counts`: trials per state (complete, failed, lapsed, pruned,
    running, waiting)."""

    id: str
    project: str
    method: str  # grid, random, bayes, optuna
    state: str
    metric: SweepMetric | None
    metrics: list[SweepMetric] = Field(description="Every objective, in order (several: a multi-objective "
                                                   "sweep, whose trials have `values`)")
    created: float | None
    run_cap: int | None
    grid_size: int | None
    trial_count: int
    counts: dict[str, int]
    best: SweepBest | None
    error: str | Absent = Field(None, description="Why the sweep could not be read (its other fields are empty)")


class SweepsResponse(BaseModel):
    """The project's newest 50 sweeps, newest first; `total`: how many it has."""

    sweeps: list[SweepSummary]
    total: int


class SweepParameter(BaseModel):
    """A searched parameter: its dotted name, W&B distribution, whether it is searched on a log
    scale, and a categorical's values in the spec's order."""

    name: str
    distribution: str
    log: bool
    values: list[Any] | Absent = None


class SweepTrial(BaseModel):
    """One trial. `state`: complete, failed, lapsed (its agent stopped renewing the lease), pruned,
    running or waiting. `value`: the objective of a complete trial; `params`: the searched
    parameters' values by dotted name; `run_state`: its run's state in the store (null: no run
    recorded); times in seconds since the epoch."""

    number: int
    state: str
    value: float | None
    values: list[float | None] | Absent = Field(None, description="Every objective (multi-objective sweeps)")
    params: dict[str, Any]
    run_id: str | None
    run_state: str | None
    agent: str | None
    start: float | None
    end: float | None
    error: str | None
    lease_expires: float | None = Field(description="A running trial's lease expiry (past: it is lapsing)")
    last_step: int | None = Field(None, description="The last step reported to the pruner (a pruned trial: "
                                                     "where it was stopped)")
    random_while_gp_imports: bool = Field(False, description="Suggested at random where the GP would have "
                                          "been asked: the GP's modules (torch, SciPy) were still importing")


class BestSoFarPoint(BaseModel):
    """A complete trial (in trial-number order), its value and the best value up to it."""

    trial: int
    value: float
    best: float


class SweepDetail(SweepSummary):
    """A sweep in full: the normalized config, its searched parameters, the newest 10,000 trials in
    trial-number order, the best-so-far series and the agents (by their first trial)."""

    config: dict[str, Any]
    parameters: list[SweepParameter]
    pareto: list[int] | None = Field(None, description="A multi-objective sweep's Pareto front: the numbers "
                                                       "of the complete trials no other beats in every objective")
    trials: list[SweepTrial]
    best_so_far: list[BestSoFarPoint]
    agents: list[str]


class SweepResponse(BaseModel):
    sweep: SweepDetail


class ParamImportance(BaseModel):
    name: str
    importance: float  # normalized: the parameters' importances sum to 1


class SweepImportanceResponse(BaseModel):
    """How much each searched parameter matters for the metric (Optuna's PED-ANOVA over the
    complete trials), most important first; `note` says why the list is empty."""

    evaluator: str
    trials: int  # complete trials it was computed from
    importances: list[ParamImportance]
    note: str | None


# ---------------------------------------------------------------------------------- server-mode sweeps


class SweepCreateRequest(BaseModel):
    """A W&B sweep config (the dict `wandb.sweep` takes); `sweep_id`: a chosen id (default: a new one)."""

    config: dict[str, Any]
    sweep_id: str | None = None


class SweepCreated(BaseModel):
    id: str
    project: str
    method: str
    grid_size: int | None
    warm_start: dict[str, Any] | None


class SweepInfoResponse(BaseModel):
    """What an agent needs to start: the sweep's project and normalized config."""

    id: str
    project: str
    config: dict[str, Any]
    state: str


class SweepNextRequest(BaseModel):
    """An agent asks for a trial. `request`: the agent's id for this ask (asking again with it after
    a lost answer returns the same lease); `resume_trial`: take that trial over while it runs."""

    agent: str = Field(min_length=1, max_length=256)
    ttl: float = Field(60.0, gt=0, le=86400)
    resume_trial: int | None = Field(None, ge=0)
    request: str | None = Field(None, max_length=128)


class SweepLeaseModel(BaseModel):
    trial: int
    run_id: str
    project: str
    config: dict[str, Any]
    agent: str
    ttl: float
    resumed: bool


class SweepNextResponse(BaseModel):
    """`kind`: `lease` (run `lease`), `wait` (ask again later: paused, or the rest runs elsewhere) or
    `finished` (nothing more: grid done, run cap reached, stopped); `reason` says why."""

    kind: str
    reason: str | None
    lease: SweepLeaseModel | None


class SweepTrialRef(BaseModel):
    trial: int = Field(ge=0)
    agent: str = Field(min_length=1, max_length=256)
    ttl: float = Field(60.0, gt=0, le=86400)


class SweepHeartbeatResponse(BaseModel):
    """`alive`: the lease was renewed. `stop`: why the trial must stop now (`lost`: the lease lapsed;
    `pruned`: the pruner stopped it, from the metric the server ingested)."""

    alive: bool
    stop: str | None


class SweepTellRequest(SweepTrialRef):
    """How the trial ended: its objective `values` (one per objective), or `error`."""

    values: list[float] | None = Field(None, max_length=64)
    error: str | None = Field(None, max_length=10_000)
    stopped: bool | None = Field(None, description="Whether the agent's stop of a pruned trial reached its run "
                                                   "before the run ended (false: the trial is told as it ended)")


class SweepTrialResult(BaseModel):
    trial: int
    state: str  # complete, failed, lapsed, pruned
    value: float | None
    values: list[float]
    message: str


class SweepReleaseRequest(SweepTrialRef):
    reason: str = Field(max_length=10_000)


class SweepControlRequest(BaseModel):
    """`state`: running, paused or stopped; or `run_cap`: a new run cap (a stopped sweep runs again)."""

    state: str | None = None
    run_cap: int | None = Field(None, ge=1)


class SweepControlResponse(BaseModel):
    state: dict[str, Any]


class PlanSeed(BaseModel):
    """One seeding call the program made (core/seeds.py): the API, and the seed as text."""

    api: str  # e.g. "torch.manual_seed", "lightning.seed_everything", "numpy.random.default_rng"
    value: str  # the seed as the program gave it ("42"; "None": a seed from the operating system)


class RankSeeds(BaseModel):
    """Another rank of a distributed run that recorded a run of its own, and the seeds it set."""

    rank: str
    run: str  # project/run_id
    seeds: list[PlanSeed]


class ReproducePlanResponse(BaseModel):
    """``tracklet reproduce RUN --dry-run`` for a run of the server's data root (docs/reproduce.md):
    what would be checked out, applied, restored, installed and run, and what can't be restored."""

    run: str  # project/run_id
    ok: bool  # no problems: reproducing would go ahead without --force
    command: str  # the command to run where the data root and the repository are
    plan: str  # the plan as `--dry-run` prints it
    env: str
    repository: str
    commit: str
    branch: str
    diff: str | None  # the path of the uncommitted changes' patch, when the run recorded one
    code_files: list[str]
    program: str
    arguments: list[str]
    workdir: str
    requirements: list[str]
    artifacts: dict[str, int]
    variables: dict[str, str]
    config: dict[str, Any]
    problems: list[str]  # what can't be restored, and why
    differences: list[str]  # what differs from the machine the run ran on
    seeds: list[PlanSeed]  # the seeds the program set, in order (it sets them again as it runs)
    seeds_dropped: int  # seeding calls past the recorder's cap (256 a run): not in `seeds`
    seeds_unknown: list[str]  # seeding modules imported before tracklet: seeds given them before that not known
    # A distributed run: the rank whose process recorded the run ("" when not distributed) of
    # `world` processes. The seeds are that process's; `rank_seeds` are the other ranks' that
    # recorded runs of their own; `ranks_unrecorded` recorded none, so their seeds are not known.
    rank: str
    world: int
    rank_seeds: list[RankSeeds]
    ranks_unrecorded: list[str]


class ValueChange(BaseModel):
    """One key whose value differs between runs a and b (absent on one side: ``null``)."""

    key: str
    a: Any = None
    b: Any = None
    only: Literal["a", "b"] | None = None  # the key is in one run only
    difference: int | float | None | Absent = None  # summary numbers: b - a
    relative: float | None | Absent = None  # summary numbers: (b - a) / |a|; null when a is 0


class CodeDiff(BaseModel):
    commits: list[str]  # a's and b's commits ("" when not recorded)
    diff: str  # a unified diff of the sources as they ran
    notes: list[str]


class RunDiffResponse(BaseModel):
    """What ``tracklet diff A B`` computes: each section lists only what differs."""

    a: str
    b: str
    config: list[ValueChange]
    environment: list[ValueChange]
    packages: list[ValueChange]
    seeds: list[ValueChange]  # the random seeds each program set, by API ("torch.manual_seed", "api#2": set again)
    code: CodeDiff
    inputs: list[ValueChange]
    summary: list[ValueChange]
