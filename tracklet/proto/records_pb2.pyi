from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SchemaVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEMA_VERSION_UNSPECIFIED: _ClassVar[SchemaVersion]
    SCHEMA_VERSION_1: _ClassVar[SchemaVersion]

class NullValue(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NULL_VALUE: _ClassVar[NullValue]

class SummaryMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUMMARY_MODE_UNSPECIFIED: _ClassVar[SummaryMode]
    SUMMARY_MODE_LAST: _ClassVar[SummaryMode]
    SUMMARY_MODE_MIN: _ClassVar[SummaryMode]
    SUMMARY_MODE_MAX: _ClassVar[SummaryMode]
    SUMMARY_MODE_MEAN: _ClassVar[SummaryMode]
    SUMMARY_MODE_NONE: _ClassVar[SummaryMode]
    SUMMARY_MODE_FIRST: _ClassVar[SummaryMode]
SCHEMA_VERSION_UNSPECIFIED: SchemaVersion
SCHEMA_VERSION_1: SchemaVersion
NULL_VALUE: NullValue
SUMMARY_MODE_UNSPECIFIED: SummaryMode
SUMMARY_MODE_LAST: SummaryMode
SUMMARY_MODE_MIN: SummaryMode
SUMMARY_MODE_MAX: SummaryMode
SUMMARY_MODE_MEAN: SummaryMode
SUMMARY_MODE_NONE: SummaryMode
SUMMARY_MODE_FIRST: SummaryMode

class Record(_message.Message):
    __slots__ = ("run_start", "config", "history", "summary", "stats", "console", "alert", "exit", "metric_definition", "environment", "artifact_logged", "artifact_used", "media", "table_logged", "span", "system_info", "checkpoint", "run_update", "artifact_linked", "seeds", "gap")
    RUN_START_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    CONSOLE_FIELD_NUMBER: _ClassVar[int]
    ALERT_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    METRIC_DEFINITION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_LOGGED_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_USED_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    TABLE_LOGGED_FIELD_NUMBER: _ClassVar[int]
    SPAN_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_INFO_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    RUN_UPDATE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_LINKED_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    run_start: RunStart
    config: ConfigUpdate
    history: HistoryBatch
    summary: SummaryUpdate
    stats: SystemStats
    console: ConsoleOutput
    alert: Alert
    exit: RunExit
    metric_definition: MetricDefinition
    environment: Environment
    artifact_logged: ArtifactLogged
    artifact_used: ArtifactUsed
    media: MediaLogged
    table_logged: TableLogged
    span: Span
    system_info: SystemInfo
    checkpoint: Checkpoint
    run_update: RunUpdate
    artifact_linked: ArtifactLinked
    seeds: SeedsSet
    gap: Gap
    def __init__(self, run_start: _Optional[_Union[RunStart, _Mapping]] = ..., config: _Optional[_Union[ConfigUpdate, _Mapping]] = ..., history: _Optional[_Union[HistoryBatch, _Mapping]] = ..., summary: _Optional[_Union[SummaryUpdate, _Mapping]] = ..., stats: _Optional[_Union[SystemStats, _Mapping]] = ..., console: _Optional[_Union[ConsoleOutput, _Mapping]] = ..., alert: _Optional[_Union[Alert, _Mapping]] = ..., exit: _Optional[_Union[RunExit, _Mapping]] = ..., metric_definition: _Optional[_Union[MetricDefinition, _Mapping]] = ..., environment: _Optional[_Union[Environment, _Mapping]] = ..., artifact_logged: _Optional[_Union[ArtifactLogged, _Mapping]] = ..., artifact_used: _Optional[_Union[ArtifactUsed, _Mapping]] = ..., media: _Optional[_Union[MediaLogged, _Mapping]] = ..., table_logged: _Optional[_Union[TableLogged, _Mapping]] = ..., span: _Optional[_Union[Span, _Mapping]] = ..., system_info: _Optional[_Union[SystemInfo, _Mapping]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., run_update: _Optional[_Union[RunUpdate, _Mapping]] = ..., artifact_linked: _Optional[_Union[ArtifactLinked, _Mapping]] = ..., seeds: _Optional[_Union[SeedsSet, _Mapping]] = ..., gap: _Optional[_Union[Gap, _Mapping]] = ...) -> None: ...

class Gap(_message.Message):
    __slots__ = ("length", "reason", "padding")
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    length: int
    reason: str
    padding: bytes
    def __init__(self, length: _Optional[int] = ..., reason: _Optional[str] = ..., padding: _Optional[bytes] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("float_value", "int_value", "bool_value", "string_value", "bytes_value", "list_value", "map_value", "null_value", "histogram_value", "big_int_value")
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAP_VALUE_FIELD_NUMBER: _ClassVar[int]
    NULL_VALUE_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_VALUE_FIELD_NUMBER: _ClassVar[int]
    BIG_INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    float_value: float
    int_value: int
    bool_value: bool
    string_value: str
    bytes_value: bytes
    list_value: ValueList
    map_value: ValueMap
    null_value: NullValue
    histogram_value: Histogram
    big_int_value: str
    def __init__(self, float_value: _Optional[float] = ..., int_value: _Optional[int] = ..., bool_value: _Optional[bool] = ..., string_value: _Optional[str] = ..., bytes_value: _Optional[bytes] = ..., list_value: _Optional[_Union[ValueList, _Mapping]] = ..., map_value: _Optional[_Union[ValueMap, _Mapping]] = ..., null_value: _Optional[_Union[NullValue, str]] = ..., histogram_value: _Optional[_Union[Histogram, _Mapping]] = ..., big_int_value: _Optional[str] = ...) -> None: ...

class ValueList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, items: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class ValueMap(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[MapEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[MapEntry, _Mapping]]] = ...) -> None: ...

class MapEntry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: Value
    def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class Histogram(_message.Message):
    __slots__ = ("edges", "counts", "nan_count", "inf_count")
    EDGES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    NAN_COUNT_FIELD_NUMBER: _ClassVar[int]
    INF_COUNT_FIELD_NUMBER: _ClassVar[int]
    edges: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    nan_count: int
    inf_count: int
    def __init__(self, edges: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ..., nan_count: _Optional[int] = ..., inf_count: _Optional[int] = ...) -> None: ...

class RunStart(_message.Message):
    __slots__ = ("schema_version", "run_id", "project", "name", "tags", "group", "job_type", "notes", "start_time", "host", "pid", "python_version", "platform", "command", "cwd", "tracklet_version", "resumed", "reproduces", "username")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    TRACKLET_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    REPRODUCES_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    schema_version: SchemaVersion
    run_id: str
    project: str
    name: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    group: str
    job_type: str
    notes: str
    start_time: float
    host: str
    pid: int
    python_version: str
    platform: str
    command: _containers.RepeatedScalarFieldContainer[str]
    cwd: str
    tracklet_version: str
    resumed: bool
    reproduces: str
    username: str
    def __init__(self, schema_version: _Optional[_Union[SchemaVersion, str]] = ..., run_id: _Optional[str] = ..., project: _Optional[str] = ..., name: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., group: _Optional[str] = ..., job_type: _Optional[str] = ..., notes: _Optional[str] = ..., start_time: _Optional[float] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., python_version: _Optional[str] = ..., platform: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., cwd: _Optional[str] = ..., tracklet_version: _Optional[str] = ..., resumed: _Optional[bool] = ..., reproduces: _Optional[str] = ..., username: _Optional[str] = ...) -> None: ...

class RunUpdate(_message.Message):
    __slots__ = ("name", "notes", "group", "job_type", "tags_set", "tags", "time", "preempting")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    TAGS_SET_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PREEMPTING_FIELD_NUMBER: _ClassVar[int]
    name: str
    notes: str
    group: str
    job_type: str
    tags_set: bool
    tags: _containers.RepeatedScalarFieldContainer[str]
    time: float
    preempting: float
    def __init__(self, name: _Optional[str] = ..., notes: _Optional[str] = ..., group: _Optional[str] = ..., job_type: _Optional[str] = ..., tags_set: _Optional[bool] = ..., tags: _Optional[_Iterable[str]] = ..., time: _Optional[float] = ..., preempting: _Optional[float] = ...) -> None: ...

class RunExit(_message.Message):
    __slots__ = ("exit_code", "end_time", "runtime", "error", "traceback", "seeds", "seeds_dropped")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    SEEDS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    end_time: float
    runtime: float
    error: str
    traceback: str
    seeds: _containers.RepeatedCompositeFieldContainer[Seed]
    seeds_dropped: int
    def __init__(self, exit_code: _Optional[int] = ..., end_time: _Optional[float] = ..., runtime: _Optional[float] = ..., error: _Optional[str] = ..., traceback: _Optional[str] = ..., seeds: _Optional[_Iterable[_Union[Seed, _Mapping]]] = ..., seeds_dropped: _Optional[int] = ...) -> None: ...

class SeedsSet(_message.Message):
    __slots__ = ("seeds", "dropped", "unknown_before")
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_BEFORE_FIELD_NUMBER: _ClassVar[int]
    seeds: _containers.RepeatedCompositeFieldContainer[Seed]
    dropped: int
    unknown_before: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, seeds: _Optional[_Iterable[_Union[Seed, _Mapping]]] = ..., dropped: _Optional[int] = ..., unknown_before: _Optional[_Iterable[str]] = ...) -> None: ...

class Seed(_message.Message):
    __slots__ = ("api", "value")
    API_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    api: str
    value: str
    def __init__(self, api: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ConfigUpdate(_message.Message):
    __slots__ = ("items", "removed")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[MapEntry]
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[_Union[MapEntry, _Mapping]]] = ..., removed: _Optional[_Iterable[str]] = ...) -> None: ...

class SummaryUpdate(_message.Message):
    __slots__ = ("items", "removed")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[MapEntry]
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[_Union[MapEntry, _Mapping]]] = ..., removed: _Optional[_Iterable[str]] = ...) -> None: ...

class MetricDefinition(_message.Message):
    __slots__ = ("name", "step_metric", "summary", "hidden", "summary_as_dict")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STEP_METRIC_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_AS_DICT_FIELD_NUMBER: _ClassVar[int]
    name: str
    step_metric: str
    summary: _containers.RepeatedScalarFieldContainer[SummaryMode]
    hidden: bool
    summary_as_dict: bool
    def __init__(self, name: _Optional[str] = ..., step_metric: _Optional[str] = ..., summary: _Optional[_Iterable[_Union[SummaryMode, str]]] = ..., hidden: _Optional[bool] = ..., summary_as_dict: _Optional[bool] = ...) -> None: ...

class HistoryBatch(_message.Message):
    __slots__ = ("new_keys", "steps", "times", "columns")
    NEW_KEYS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    new_keys: _containers.RepeatedCompositeFieldContainer[KeyDefinition]
    steps: _containers.RepeatedScalarFieldContainer[int]
    times: _containers.RepeatedScalarFieldContainer[float]
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    def __init__(self, new_keys: _Optional[_Iterable[_Union[KeyDefinition, _Mapping]]] = ..., steps: _Optional[_Iterable[int]] = ..., times: _Optional[_Iterable[float]] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ...) -> None: ...

class KeyDefinition(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("key", "rows", "floats", "ints", "bools", "strings", "histograms", "big_ints", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    FLOATS_FIELD_NUMBER: _ClassVar[int]
    INTS_FIELD_NUMBER: _ClassVar[int]
    BOOLS_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAMS_FIELD_NUMBER: _ClassVar[int]
    BIG_INTS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: int
    rows: _containers.RepeatedScalarFieldContainer[int]
    floats: _containers.RepeatedScalarFieldContainer[float]
    ints: _containers.RepeatedScalarFieldContainer[int]
    bools: _containers.RepeatedScalarFieldContainer[bool]
    strings: _containers.RepeatedScalarFieldContainer[str]
    histograms: _containers.RepeatedCompositeFieldContainer[Histogram]
    big_ints: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, key: _Optional[int] = ..., rows: _Optional[_Iterable[int]] = ..., floats: _Optional[_Iterable[float]] = ..., ints: _Optional[_Iterable[int]] = ..., bools: _Optional[_Iterable[bool]] = ..., strings: _Optional[_Iterable[str]] = ..., histograms: _Optional[_Iterable[_Union[Histogram, _Mapping]]] = ..., big_ints: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("path", "sha256", "size_bytes", "step", "has_score", "score", "monitor", "time", "metadata", "error")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    HAS_SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    MONITOR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    path: str
    sha256: str
    size_bytes: int
    step: int
    has_score: bool
    score: float
    monitor: str
    time: float
    metadata: _containers.RepeatedCompositeFieldContainer[MapEntry]
    error: str
    def __init__(self, path: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., step: _Optional[int] = ..., has_score: _Optional[bool] = ..., score: _Optional[float] = ..., monitor: _Optional[str] = ..., time: _Optional[float] = ..., metadata: _Optional[_Iterable[_Union[MapEntry, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class ArtifactVersionRef(_message.Message):
    __slots__ = ("project", "name", "type", "version", "digest")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    project: str
    name: str
    type: str
    version: int
    digest: str
    def __init__(self, project: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., version: _Optional[int] = ..., digest: _Optional[str] = ...) -> None: ...

class ArtifactLogged(_message.Message):
    __slots__ = ("artifact", "aliases", "size_bytes", "file_count", "time", "reused", "bytes_written")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    BYTES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    artifact: ArtifactVersionRef
    aliases: _containers.RepeatedScalarFieldContainer[str]
    size_bytes: int
    file_count: int
    time: float
    reused: bool
    bytes_written: int
    def __init__(self, artifact: _Optional[_Union[ArtifactVersionRef, _Mapping]] = ..., aliases: _Optional[_Iterable[str]] = ..., size_bytes: _Optional[int] = ..., file_count: _Optional[int] = ..., time: _Optional[float] = ..., reused: _Optional[bool] = ..., bytes_written: _Optional[int] = ...) -> None: ...

class ArtifactUsed(_message.Message):
    __slots__ = ("artifact", "time")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    artifact: ArtifactVersionRef
    time: float
    def __init__(self, artifact: _Optional[_Union[ArtifactVersionRef, _Mapping]] = ..., time: _Optional[float] = ...) -> None: ...

class ArtifactLinked(_message.Message):
    __slots__ = ("artifact", "registry", "collection", "version", "aliases", "time")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    artifact: ArtifactVersionRef
    registry: str
    collection: str
    version: int
    aliases: _containers.RepeatedScalarFieldContainer[str]
    time: float
    def __init__(self, artifact: _Optional[_Union[ArtifactVersionRef, _Mapping]] = ..., registry: _Optional[str] = ..., collection: _Optional[str] = ..., version: _Optional[int] = ..., aliases: _Optional[_Iterable[str]] = ..., time: _Optional[float] = ...) -> None: ...

class MediaLogged(_message.Message):
    __slots__ = ("key", "step", "index", "count", "kind", "digest", "format", "mime", "size_bytes", "time", "caption", "width", "height", "channels", "duration", "sample_rate", "fps", "frames", "thumbnail_digest", "source_name", "masks", "boxes", "mode", "dtype")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MIME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    MASKS_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    step: int
    index: int
    count: int
    kind: str
    digest: str
    format: str
    mime: str
    size_bytes: int
    time: float
    caption: str
    width: int
    height: int
    channels: int
    duration: float
    sample_rate: int
    fps: float
    frames: int
    thumbnail_digest: str
    source_name: str
    masks: _containers.RepeatedCompositeFieldContainer[MediaMask]
    boxes: _containers.RepeatedCompositeFieldContainer[MediaBoxes]
    mode: str
    dtype: str
    def __init__(self, key: _Optional[str] = ..., step: _Optional[int] = ..., index: _Optional[int] = ..., count: _Optional[int] = ..., kind: _Optional[str] = ..., digest: _Optional[str] = ..., format: _Optional[str] = ..., mime: _Optional[str] = ..., size_bytes: _Optional[int] = ..., time: _Optional[float] = ..., caption: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., channels: _Optional[int] = ..., duration: _Optional[float] = ..., sample_rate: _Optional[int] = ..., fps: _Optional[float] = ..., frames: _Optional[int] = ..., thumbnail_digest: _Optional[str] = ..., source_name: _Optional[str] = ..., masks: _Optional[_Iterable[_Union[MediaMask, _Mapping]]] = ..., boxes: _Optional[_Iterable[_Union[MediaBoxes, _Mapping]]] = ..., mode: _Optional[str] = ..., dtype: _Optional[str] = ...) -> None: ...

class MediaMask(_message.Message):
    __slots__ = ("name", "digest", "class_labels", "width", "height")
    class ClassLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABELS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    digest: str
    class_labels: _containers.ScalarMap[int, str]
    width: int
    height: int
    def __init__(self, name: _Optional[str] = ..., digest: _Optional[str] = ..., class_labels: _Optional[_Mapping[int, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class MediaBoxes(_message.Message):
    __slots__ = ("name", "boxes", "class_labels")
    class ClassLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    boxes: _containers.RepeatedCompositeFieldContainer[MediaBox]
    class_labels: _containers.ScalarMap[int, str]
    def __init__(self, name: _Optional[str] = ..., boxes: _Optional[_Iterable[_Union[MediaBox, _Mapping]]] = ..., class_labels: _Optional[_Mapping[int, str]] = ...) -> None: ...

class MediaBox(_message.Message):
    __slots__ = ("min_x", "max_x", "min_y", "max_y", "pixel", "class_id", "caption", "scores")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MIN_X_FIELD_NUMBER: _ClassVar[int]
    MAX_X_FIELD_NUMBER: _ClassVar[int]
    MIN_Y_FIELD_NUMBER: _ClassVar[int]
    MAX_Y_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    min_x: float
    max_x: float
    min_y: float
    max_y: float
    pixel: bool
    class_id: int
    caption: str
    scores: _containers.ScalarMap[str, float]
    def __init__(self, min_x: _Optional[float] = ..., max_x: _Optional[float] = ..., min_y: _Optional[float] = ..., max_y: _Optional[float] = ..., pixel: _Optional[bool] = ..., class_id: _Optional[int] = ..., caption: _Optional[str] = ..., scores: _Optional[_Mapping[str, float]] = ...) -> None: ...

class TableLogged(_message.Message):
    __slots__ = ("key", "step", "time", "log_mode", "table_id", "increment", "fragments", "rows", "columns", "chart", "version_plus_one")
    class LogMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        LOG_MODE_UNSPECIFIED: _ClassVar[TableLogged.LogMode]
        LOG_MODE_IMMUTABLE: _ClassVar[TableLogged.LogMode]
        LOG_MODE_MUTABLE: _ClassVar[TableLogged.LogMode]
        LOG_MODE_INCREMENTAL: _ClassVar[TableLogged.LogMode]
    LOG_MODE_UNSPECIFIED: TableLogged.LogMode
    LOG_MODE_IMMUTABLE: TableLogged.LogMode
    LOG_MODE_MUTABLE: TableLogged.LogMode
    LOG_MODE_INCREMENTAL: TableLogged.LogMode
    KEY_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    LOG_MODE_FIELD_NUMBER: _ClassVar[int]
    TABLE_ID_FIELD_NUMBER: _ClassVar[int]
    INCREMENT_FIELD_NUMBER: _ClassVar[int]
    FRAGMENTS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    CHART_FIELD_NUMBER: _ClassVar[int]
    VERSION_PLUS_ONE_FIELD_NUMBER: _ClassVar[int]
    key: str
    step: int
    time: float
    log_mode: TableLogged.LogMode
    table_id: str
    increment: int
    fragments: _containers.RepeatedCompositeFieldContainer[TableFragment]
    rows: int
    columns: _containers.RepeatedCompositeFieldContainer[TableColumn]
    chart: TableChart
    version_plus_one: int
    def __init__(self, key: _Optional[str] = ..., step: _Optional[int] = ..., time: _Optional[float] = ..., log_mode: _Optional[_Union[TableLogged.LogMode, str]] = ..., table_id: _Optional[str] = ..., increment: _Optional[int] = ..., fragments: _Optional[_Iterable[_Union[TableFragment, _Mapping]]] = ..., rows: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[TableColumn, _Mapping]]] = ..., chart: _Optional[_Union[TableChart, _Mapping]] = ..., version_plus_one: _Optional[int] = ...) -> None: ...

class TableChart(_message.Message):
    __slots__ = ("kind", "title", "x", "y", "series", "value", "x_title", "y_title", "spec", "fields", "chart_key")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    X_TITLE_FIELD_NUMBER: _ClassVar[int]
    Y_TITLE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CHART_KEY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    title: str
    x: str
    y: str
    series: str
    value: str
    x_title: str
    y_title: str
    spec: str
    fields: _containers.ScalarMap[str, str]
    chart_key: str
    def __init__(self, kind: _Optional[str] = ..., title: _Optional[str] = ..., x: _Optional[str] = ..., y: _Optional[str] = ..., series: _Optional[str] = ..., value: _Optional[str] = ..., x_title: _Optional[str] = ..., y_title: _Optional[str] = ..., spec: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ..., chart_key: _Optional[str] = ...) -> None: ...

class TableFragment(_message.Message):
    __slots__ = ("digest", "rows", "size_bytes")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    digest: str
    rows: int
    size_bytes: int
    def __init__(self, digest: _Optional[str] = ..., rows: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class TableColumn(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class SystemStats(_message.Message):
    __slots__ = ("time", "values", "window_start")
    TIME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    time: float
    values: _containers.RepeatedCompositeFieldContainer[StatValue]
    window_start: float
    def __init__(self, time: _Optional[float] = ..., values: _Optional[_Iterable[_Union[StatValue, _Mapping]]] = ..., window_start: _Optional[float] = ...) -> None: ...

class StatValue(_message.Message):
    __slots__ = ("name", "value", "max", "samples")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    max: float
    samples: int
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., max: _Optional[float] = ..., samples: _Optional[int] = ...) -> None: ...

class SystemInfo(_message.Message):
    __slots__ = ("gpus", "driver_version", "cuda_driver_version", "physical_gpu_count", "cuda_visible_devices", "notes")
    GPUS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PHYSICAL_GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    CUDA_VISIBLE_DEVICES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    gpus: _containers.RepeatedCompositeFieldContainer[GpuDevice]
    driver_version: str
    cuda_driver_version: str
    physical_gpu_count: int
    cuda_visible_devices: str
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gpus: _Optional[_Iterable[_Union[GpuDevice, _Mapping]]] = ..., driver_version: _Optional[str] = ..., cuda_driver_version: _Optional[str] = ..., physical_gpu_count: _Optional[int] = ..., cuda_visible_devices: _Optional[str] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class GpuDevice(_message.Message):
    __slots__ = ("index", "nvml_index", "name", "uuid", "memory_total_bytes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NVML_INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    index: int
    nvml_index: int
    name: str
    uuid: str
    memory_total_bytes: float
    def __init__(self, index: _Optional[int] = ..., nvml_index: _Optional[int] = ..., name: _Optional[str] = ..., uuid: _Optional[str] = ..., memory_total_bytes: _Optional[float] = ...) -> None: ...

class ConsoleOutput(_message.Message):
    __slots__ = ("stream", "lines")
    class Stream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STREAM_UNSPECIFIED: _ClassVar[ConsoleOutput.Stream]
        STREAM_STDOUT: _ClassVar[ConsoleOutput.Stream]
        STREAM_STDERR: _ClassVar[ConsoleOutput.Stream]
    STREAM_UNSPECIFIED: ConsoleOutput.Stream
    STREAM_STDOUT: ConsoleOutput.Stream
    STREAM_STDERR: ConsoleOutput.Stream
    STREAM_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    stream: ConsoleOutput.Stream
    lines: _containers.RepeatedCompositeFieldContainer[ConsoleLine]
    def __init__(self, stream: _Optional[_Union[ConsoleOutput.Stream, str]] = ..., lines: _Optional[_Iterable[_Union[ConsoleLine, _Mapping]]] = ...) -> None: ...

class ConsoleLine(_message.Message):
    __slots__ = ("time", "text", "partial")
    TIME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    time: float
    text: str
    partial: bool
    def __init__(self, time: _Optional[float] = ..., text: _Optional[str] = ..., partial: _Optional[bool] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("title", "text", "level", "time")
    class Level(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        LEVEL_UNSPECIFIED: _ClassVar[Alert.Level]
        LEVEL_INFO: _ClassVar[Alert.Level]
        LEVEL_WARN: _ClassVar[Alert.Level]
        LEVEL_ERROR: _ClassVar[Alert.Level]
    LEVEL_UNSPECIFIED: Alert.Level
    LEVEL_INFO: Alert.Level
    LEVEL_WARN: Alert.Level
    LEVEL_ERROR: Alert.Level
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    title: str
    text: str
    level: Alert.Level
    time: float
    def __init__(self, title: _Optional[str] = ..., text: _Optional[str] = ..., level: _Optional[_Union[Alert.Level, str]] = ..., time: _Optional[float] = ...) -> None: ...

class Environment(_message.Message):
    __slots__ = ("git_commit", "git_branch", "git_remote", "git_root", "git_dirty", "git_diff_sha256", "hostname", "os", "cpu_model", "cpu_count", "memory_total_bytes", "gpus", "packages", "executable", "incomplete", "python_implementation", "variables", "cuda_version", "cudnn_version", "code_files", "code_skipped", "program", "incomplete_reasons")
    class VariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class IncompleteReasonsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    GIT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    GIT_BRANCH_FIELD_NUMBER: _ClassVar[int]
    GIT_REMOTE_FIELD_NUMBER: _ClassVar[int]
    GIT_ROOT_FIELD_NUMBER: _ClassVar[int]
    GIT_DIRTY_FIELD_NUMBER: _ClassVar[int]
    GIT_DIFF_SHA256_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    PACKAGES_FIELD_NUMBER: _ClassVar[int]
    EXECUTABLE_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_FIELD_NUMBER: _ClassVar[int]
    PYTHON_IMPLEMENTATION_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    CUDA_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDNN_VERSION_FIELD_NUMBER: _ClassVar[int]
    CODE_FILES_FIELD_NUMBER: _ClassVar[int]
    CODE_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_REASONS_FIELD_NUMBER: _ClassVar[int]
    git_commit: str
    git_branch: str
    git_remote: str
    git_root: str
    git_dirty: bool
    git_diff_sha256: str
    hostname: str
    os: str
    cpu_model: str
    cpu_count: int
    memory_total_bytes: float
    gpus: _containers.RepeatedScalarFieldContainer[str]
    packages: _containers.RepeatedCompositeFieldContainer[Package]
    executable: str
    incomplete: _containers.RepeatedScalarFieldContainer[str]
    python_implementation: str
    variables: _containers.ScalarMap[str, str]
    cuda_version: str
    cudnn_version: str
    code_files: _containers.RepeatedCompositeFieldContainer[CodeFile]
    code_skipped: _containers.RepeatedScalarFieldContainer[str]
    program: str
    incomplete_reasons: _containers.ScalarMap[str, str]
    def __init__(self, git_commit: _Optional[str] = ..., git_branch: _Optional[str] = ..., git_remote: _Optional[str] = ..., git_root: _Optional[str] = ..., git_dirty: _Optional[bool] = ..., git_diff_sha256: _Optional[str] = ..., hostname: _Optional[str] = ..., os: _Optional[str] = ..., cpu_model: _Optional[str] = ..., cpu_count: _Optional[int] = ..., memory_total_bytes: _Optional[float] = ..., gpus: _Optional[_Iterable[str]] = ..., packages: _Optional[_Iterable[_Union[Package, _Mapping]]] = ..., executable: _Optional[str] = ..., incomplete: _Optional[_Iterable[str]] = ..., python_implementation: _Optional[str] = ..., variables: _Optional[_Mapping[str, str]] = ..., cuda_version: _Optional[str] = ..., cudnn_version: _Optional[str] = ..., code_files: _Optional[_Iterable[_Union[CodeFile, _Mapping]]] = ..., code_skipped: _Optional[_Iterable[str]] = ..., program: _Optional[str] = ..., incomplete_reasons: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CodeFile(_message.Message):
    __slots__ = ("path", "size_bytes", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    size_bytes: int
    sha256: str
    def __init__(self, path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class Package(_message.Message):
    __slots__ = ("name", "version", "url", "editable", "vcs", "commit", "requested_revision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EDITABLE_FIELD_NUMBER: _ClassVar[int]
    VCS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    url: str
    editable: bool
    vcs: str
    commit: str
    requested_revision: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., url: _Optional[str] = ..., editable: _Optional[bool] = ..., vcs: _Optional[str] = ..., commit: _Optional[str] = ..., requested_revision: _Optional[str] = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("trace_id", "span_id", "parent_span_id", "trace_state", "name", "kind", "start_time_unix_nano", "end_time_unix_nano", "status_code", "status_message", "attributes", "events", "links", "run_id", "step", "input", "output")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Span.Kind]
        KIND_INTERNAL: _ClassVar[Span.Kind]
        KIND_SERVER: _ClassVar[Span.Kind]
        KIND_CLIENT: _ClassVar[Span.Kind]
        KIND_PRODUCER: _ClassVar[Span.Kind]
        KIND_CONSUMER: _ClassVar[Span.Kind]
    KIND_UNSPECIFIED: Span.Kind
    KIND_INTERNAL: Span.Kind
    KIND_SERVER: Span.Kind
    KIND_CLIENT: Span.Kind
    KIND_PRODUCER: Span.Kind
    KIND_CONSUMER: Span.Kind
    class StatusCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSET: _ClassVar[Span.StatusCode]
        STATUS_OK: _ClassVar[Span.StatusCode]
        STATUS_ERROR: _ClassVar[Span.StatusCode]
    STATUS_UNSET: Span.StatusCode
    STATUS_OK: Span.StatusCode
    STATUS_ERROR: Span.StatusCode
    class Event(_message.Message):
        __slots__ = ("name", "time_unix_nano", "attributes")
        NAME_FIELD_NUMBER: _ClassVar[int]
        TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
        ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
        name: str
        time_unix_nano: int
        attributes: _containers.RepeatedCompositeFieldContainer[MapEntry]
        def __init__(self, name: _Optional[str] = ..., time_unix_nano: _Optional[int] = ..., attributes: _Optional[_Iterable[_Union[MapEntry, _Mapping]]] = ...) -> None: ...
    class Link(_message.Message):
        __slots__ = ("trace_id", "span_id", "trace_state", "attributes")
        TRACE_ID_FIELD_NUMBER: _ClassVar[int]
        SPAN_ID_FIELD_NUMBER: _ClassVar[int]
        TRACE_STATE_FIELD_NUMBER: _ClassVar[int]
        ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
        trace_id: bytes
        span_id: bytes
        trace_state: str
        attributes: _containers.RepeatedCompositeFieldContainer[MapEntry]
        def __init__(self, trace_id: _Optional[bytes] = ..., span_id: _Optional[bytes] = ..., trace_state: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[MapEntry, _Mapping]]] = ...) -> None: ...
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_STATE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    trace_state: str
    name: str
    kind: Span.Kind
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: Span.StatusCode
    status_message: str
    attributes: _containers.RepeatedCompositeFieldContainer[MapEntry]
    events: _containers.RepeatedCompositeFieldContainer[Span.Event]
    links: _containers.RepeatedCompositeFieldContainer[Span.Link]
    run_id: str
    step: int
    input: SpanPayload
    output: SpanPayload
    def __init__(self, trace_id: _Optional[bytes] = ..., span_id: _Optional[bytes] = ..., parent_span_id: _Optional[bytes] = ..., trace_state: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[Span.Kind, str]] = ..., start_time_unix_nano: _Optional[int] = ..., end_time_unix_nano: _Optional[int] = ..., status_code: _Optional[_Union[Span.StatusCode, str]] = ..., status_message: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[MapEntry, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[Span.Event, _Mapping]]] = ..., links: _Optional[_Iterable[_Union[Span.Link, _Mapping]]] = ..., run_id: _Optional[str] = ..., step: _Optional[int] = ..., input: _Optional[_Union[SpanPayload, _Mapping]] = ..., output: _Optional[_Union[SpanPayload, _Mapping]] = ...) -> None: ...

class SpanPayload(_message.Message):
    __slots__ = ("json", "blob_digest", "size_bytes")
    JSON_FIELD_NUMBER: _ClassVar[int]
    BLOB_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    json: str
    blob_digest: str
    size_bytes: int
    def __init__(self, json: _Optional[str] = ..., blob_digest: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...
