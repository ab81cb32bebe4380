from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Record(_message.Message):
    __slots__ = ("num", "history", "summary", "output", "config", "stats", "alert", "metric", "output_raw", "run", "exit", "header", "environment")
    NUM_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    ALERT_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_RAW_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    num: int
    history: HistoryRecord
    summary: SummaryRecord
    output: OutputRecord
    config: ConfigRecord
    stats: StatsRecord
    alert: AlertRecord
    metric: MetricRecord
    output_raw: OutputRawRecord
    run: RunRecord
    exit: RunExitRecord
    header: HeaderRecord
    environment: EnvironmentRecord
    def __init__(self, num: _Optional[int] = ..., history: _Optional[_Union[HistoryRecord, _Mapping]] = ..., summary: _Optional[_Union[SummaryRecord, _Mapping]] = ..., output: _Optional[_Union[OutputRecord, _Mapping]] = ..., config: _Optional[_Union[ConfigRecord, _Mapping]] = ..., stats: _Optional[_Union[StatsRecord, _Mapping]] = ..., alert: _Optional[_Union[AlertRecord, _Mapping]] = ..., metric: _Optional[_Union[MetricRecord, _Mapping]] = ..., output_raw: _Optional[_Union[OutputRawRecord, _Mapping]] = ..., run: _Optional[_Union[RunRecord, _Mapping]] = ..., exit: _Optional[_Union[RunExitRecord, _Mapping]] = ..., header: _Optional[_Union[HeaderRecord, _Mapping]] = ..., environment: _Optional[_Union[EnvironmentRecord, _Mapping]] = ...) -> None: ...

class Timestamp(_message.Message):
    __slots__ = ("seconds", "nanos")
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    NANOS_FIELD_NUMBER: _ClassVar[int]
    seconds: int
    nanos: int
    def __init__(self, seconds: _Optional[int] = ..., nanos: _Optional[int] = ...) -> None: ...

class RunRecord(_message.Message):
    __slots__ = ("run_id", "entity", "project", "config", "summary", "run_group", "job_type", "display_name", "notes", "tags", "sweep_id", "host", "starting_step", "start_time", "resumed", "runtime", "git")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    RUN_GROUP_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    STARTING_STEP_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    GIT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    entity: str
    project: str
    config: ConfigRecord
    summary: SummaryRecord
    run_group: str
    job_type: str
    display_name: str
    notes: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    sweep_id: str
    host: str
    starting_step: int
    start_time: Timestamp
    resumed: bool
    runtime: int
    git: GitRepoRecord
    def __init__(self, run_id: _Optional[str] = ..., entity: _Optional[str] = ..., project: _Optional[str] = ..., config: _Optional[_Union[ConfigRecord, _Mapping]] = ..., summary: _Optional[_Union[SummaryRecord, _Mapping]] = ..., run_group: _Optional[str] = ..., job_type: _Optional[str] = ..., display_name: _Optional[str] = ..., notes: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., sweep_id: _Optional[str] = ..., host: _Optional[str] = ..., starting_step: _Optional[int] = ..., start_time: _Optional[_Union[Timestamp, _Mapping]] = ..., resumed: _Optional[bool] = ..., runtime: _Optional[int] = ..., git: _Optional[_Union[GitRepoRecord, _Mapping]] = ...) -> None: ...

class GitRepoRecord(_message.Message):
    __slots__ = ("remote_url", "commit")
    REMOTE_URL_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    remote_url: str
    commit: str
    def __init__(self, remote_url: _Optional[str] = ..., commit: _Optional[str] = ...) -> None: ...

class HistoryRecord(_message.Message):
    __slots__ = ("item", "step")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    item: _containers.RepeatedCompositeFieldContainer[HistoryItem]
    step: HistoryStep
    def __init__(self, item: _Optional[_Iterable[_Union[HistoryItem, _Mapping]]] = ..., step: _Optional[_Union[HistoryStep, _Mapping]] = ...) -> None: ...

class HistoryStep(_message.Message):
    __slots__ = ("num",)
    NUM_FIELD_NUMBER: _ClassVar[int]
    num: int
    def __init__(self, num: _Optional[int] = ...) -> None: ...

class HistoryItem(_message.Message):
    __slots__ = ("key", "nested_key", "none", "boolean", "integer", "number", "text", "json", "value_json")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NESTED_KEY_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    BOOLEAN_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    key: str
    nested_key: _containers.RepeatedScalarFieldContainer[str]
    none: int
    boolean: bool
    integer: int
    number: float
    text: str
    json: str
    value_json: str
    def __init__(self, key: _Optional[str] = ..., nested_key: _Optional[_Iterable[str]] = ..., none: _Optional[int] = ..., boolean: _Optional[bool] = ..., integer: _Optional[int] = ..., number: _Optional[float] = ..., text: _Optional[str] = ..., json: _Optional[str] = ..., value_json: _Optional[str] = ...) -> None: ...

class ConfigRecord(_message.Message):
    __slots__ = ("update", "remove")
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    update: _containers.RepeatedCompositeFieldContainer[JsonItem]
    remove: _containers.RepeatedCompositeFieldContainer[JsonItem]
    def __init__(self, update: _Optional[_Iterable[_Union[JsonItem, _Mapping]]] = ..., remove: _Optional[_Iterable[_Union[JsonItem, _Mapping]]] = ...) -> None: ...

class SummaryRecord(_message.Message):
    __slots__ = ("update", "remove")
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    update: _containers.RepeatedCompositeFieldContainer[JsonItem]
    remove: _containers.RepeatedCompositeFieldContainer[JsonItem]
    def __init__(self, update: _Optional[_Iterable[_Union[JsonItem, _Mapping]]] = ..., remove: _Optional[_Iterable[_Union[JsonItem, _Mapping]]] = ...) -> None: ...

class JsonItem(_message.Message):
    __slots__ = ("key", "nested_key", "value_json")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NESTED_KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    key: str
    nested_key: _containers.RepeatedScalarFieldContainer[str]
    value_json: str
    def __init__(self, key: _Optional[str] = ..., nested_key: _Optional[_Iterable[str]] = ..., value_json: _Optional[str] = ...) -> None: ...

class OutputRecord(_message.Message):
    __slots__ = ("output_type", "timestamp", "line")
    class OutputType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STDERR: _ClassVar[OutputRecord.OutputType]
        STDOUT: _ClassVar[OutputRecord.OutputType]
    STDERR: OutputRecord.OutputType
    STDOUT: OutputRecord.OutputType
    OUTPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    output_type: OutputRecord.OutputType
    timestamp: Timestamp
    line: str
    def __init__(self, output_type: _Optional[_Union[OutputRecord.OutputType, str]] = ..., timestamp: _Optional[_Union[Timestamp, _Mapping]] = ..., line: _Optional[str] = ...) -> None: ...

class OutputRawRecord(_message.Message):
    __slots__ = ("output_type", "timestamp", "line")
    OUTPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    output_type: OutputRecord.OutputType
    timestamp: Timestamp
    line: str
    def __init__(self, output_type: _Optional[_Union[OutputRecord.OutputType, str]] = ..., timestamp: _Optional[_Union[Timestamp, _Mapping]] = ..., line: _Optional[str] = ...) -> None: ...

class StatsRecord(_message.Message):
    __slots__ = ("timestamp", "item")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    timestamp: Timestamp
    item: _containers.RepeatedCompositeFieldContainer[StatsItem]
    def __init__(self, timestamp: _Optional[_Union[Timestamp, _Mapping]] = ..., item: _Optional[_Iterable[_Union[StatsItem, _Mapping]]] = ...) -> None: ...

class StatsItem(_message.Message):
    __slots__ = ("key", "value_json")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    key: str
    value_json: str
    def __init__(self, key: _Optional[str] = ..., value_json: _Optional[str] = ...) -> None: ...

class RunExitRecord(_message.Message):
    __slots__ = ("exit_code", "runtime")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    runtime: int
    def __init__(self, exit_code: _Optional[int] = ..., runtime: _Optional[int] = ...) -> None: ...

class MetricRecord(_message.Message):
    __slots__ = ("name", "glob_name", "step_metric", "options", "summary", "expanded_from_glob")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GLOB_NAME_FIELD_NUMBER: _ClassVar[int]
    STEP_METRIC_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    EXPANDED_FROM_GLOB_FIELD_NUMBER: _ClassVar[int]
    name: str
    glob_name: str
    step_metric: str
    options: MetricOptions
    summary: MetricSummary
    expanded_from_glob: bool
    def __init__(self, name: _Optional[str] = ..., glob_name: _Optional[str] = ..., step_metric: _Optional[str] = ..., options: _Optional[_Union[MetricOptions, _Mapping]] = ..., summary: _Optional[_Union[MetricSummary, _Mapping]] = ..., expanded_from_glob: _Optional[bool] = ...) -> None: ...

class MetricOptions(_message.Message):
    __slots__ = ("step_sync", "hidden")
    STEP_SYNC_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    step_sync: bool
    hidden: bool
    def __init__(self, step_sync: _Optional[bool] = ..., hidden: _Optional[bool] = ...) -> None: ...

class MetricSummary(_message.Message):
    __slots__ = ("min", "max", "mean", "best", "last", "none", "copy", "first")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    min: bool
    max: bool
    mean: bool
    best: bool
    last: bool
    none: bool
    copy: bool
    first: bool
    def __init__(self, min: _Optional[bool] = ..., max: _Optional[bool] = ..., mean: _Optional[bool] = ..., best: _Optional[bool] = ..., last: _Optional[bool] = ..., none: _Optional[bool] = ..., copy: _Optional[bool] = ..., first: _Optional[bool] = ...) -> None: ...

class AlertRecord(_message.Message):
    __slots__ = ("title", "text", "level")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    title: str
    text: str
    level: str
    def __init__(self, title: _Optional[str] = ..., text: _Optional[str] = ..., level: _Optional[str] = ...) -> None: ...

class HeaderRecord(_message.Message):
    __slots__ = ("version_info",)
    VERSION_INFO_FIELD_NUMBER: _ClassVar[int]
    version_info: VersionInfo
    def __init__(self, version_info: _Optional[_Union[VersionInfo, _Mapping]] = ...) -> None: ...

class VersionInfo(_message.Message):
    __slots__ = ("producer", "min_consumer")
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    MIN_CONSUMER_FIELD_NUMBER: _ClassVar[int]
    producer: str
    min_consumer: str
    def __init__(self, producer: _Optional[str] = ..., min_consumer: _Optional[str] = ...) -> None: ...

class EnvironmentRecord(_message.Message):
    __slots__ = ("os", "python", "started_at", "args", "program", "code_path", "git", "root", "host", "username", "executable", "cpu_count", "cpu_count_logical", "gpu_type", "gpu_count", "memory", "cpu")
    OS_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    CODE_PATH_FIELD_NUMBER: _ClassVar[int]
    GIT_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    EXECUTABLE_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_LOGICAL_FIELD_NUMBER: _ClassVar[int]
    GPU_TYPE_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    os: str
    python: str
    started_at: Timestamp
    args: _containers.RepeatedScalarFieldContainer[str]
    program: str
    code_path: str
    git: GitRepoRecord
    root: str
    host: str
    username: str
    executable: str
    cpu_count: int
    cpu_count_logical: int
    gpu_type: str
    gpu_count: int
    memory: MemoryInfo
    cpu: CpuInfo
    def __init__(self, os: _Optional[str] = ..., python: _Optional[str] = ..., started_at: _Optional[_Union[Timestamp, _Mapping]] = ..., args: _Optional[_Iterable[str]] = ..., program: _Optional[str] = ..., code_path: _Optional[str] = ..., git: _Optional[_Union[GitRepoRecord, _Mapping]] = ..., root: _Optional[str] = ..., host: _Optional[str] = ..., username: _Optional[str] = ..., executable: _Optional[str] = ..., cpu_count: _Optional[int] = ..., cpu_count_logical: _Optional[int] = ..., gpu_type: _Optional[str] = ..., gpu_count: _Optional[int] = ..., memory: _Optional[_Union[MemoryInfo, _Mapping]] = ..., cpu: _Optional[_Union[CpuInfo, _Mapping]] = ...) -> None: ...

class MemoryInfo(_message.Message):
    __slots__ = ("total",)
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    total: int
    def __init__(self, total: _Optional[int] = ...) -> None: ...

class CpuInfo(_message.Message):
    __slots__ = ("count", "count_logical", "model")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    COUNT_LOGICAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    count: int
    count_logical: int
    model: str
    def __init__(self, count: _Optional[int] = ..., count_logical: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class RecordView(_message.Message):
    __slots__ = ("history", "summary")
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    history: HistoryView
    summary: SummaryView
    def __init__(self, history: _Optional[_Union[HistoryView, _Mapping]] = ..., summary: _Optional[_Union[SummaryView, _Mapping]] = ...) -> None: ...

class HistoryView(_message.Message):
    __slots__ = ("item", "step")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    item: MergedItems
    step: HistoryStep
    def __init__(self, item: _Optional[_Union[MergedItems, _Mapping]] = ..., step: _Optional[_Union[HistoryStep, _Mapping]] = ...) -> None: ...

class SummaryView(_message.Message):
    __slots__ = ("update", "remove")
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    update: MergedItems
    remove: MergedItems
    def __init__(self, update: _Optional[_Union[MergedItems, _Mapping]] = ..., remove: _Optional[_Union[MergedItems, _Mapping]] = ...) -> None: ...

class MergedItems(_message.Message):
    __slots__ = ("key", "nested_key", "none", "boolean", "integer", "number", "text", "json", "value_json")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NESTED_KEY_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    BOOLEAN_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    key: _containers.RepeatedScalarFieldContainer[str]
    nested_key: _containers.RepeatedScalarFieldContainer[str]
    none: _containers.RepeatedScalarFieldContainer[int]
    boolean: _containers.RepeatedScalarFieldContainer[bool]
    integer: _containers.RepeatedScalarFieldContainer[int]
    number: _containers.RepeatedScalarFieldContainer[float]
    text: _containers.RepeatedScalarFieldContainer[str]
    json: _containers.RepeatedScalarFieldContainer[str]
    value_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[_Iterable[str]] = ..., nested_key: _Optional[_Iterable[str]] = ..., none: _Optional[_Iterable[int]] = ..., boolean: _Optional[_Iterable[bool]] = ..., integer: _Optional[_Iterable[int]] = ..., number: _Optional[_Iterable[float]] = ..., text: _Optional[_Iterable[str]] = ..., json: _Optional[_Iterable[str]] = ..., value_json: _Optional[_Iterable[str]] = ...) -> None: ...
