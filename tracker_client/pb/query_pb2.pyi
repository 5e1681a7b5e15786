from tracker_client.pb import experiments_pb2 as _experiments_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Downsampling(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOWNSAMPLING_UNSPECIFIED: _ClassVar[Downsampling]
    DOWNSAMPLING_MINMAX: _ClassVar[Downsampling]
    DOWNSAMPLING_LTTB: _ClassVar[Downsampling]
    DOWNSAMPLING_NONE: _ClassVar[Downsampling]

class RankAggregation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RANK_AGGREGATION_UNSPECIFIED: _ClassVar[RankAggregation]
    RANK_AGGREGATION_PER_RANK: _ClassVar[RankAggregation]
    RANK_AGGREGATION_MEAN: _ClassVar[RankAggregation]
    RANK_AGGREGATION_MIN: _ClassVar[RankAggregation]
    RANK_AGGREGATION_MAX: _ClassVar[RankAggregation]

class Goal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GOAL_UNSPECIFIED: _ClassVar[Goal]
    GOAL_MINIMIZE: _ClassVar[Goal]
    GOAL_MAXIMIZE: _ClassVar[Goal]

class SummaryField(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUMMARY_FIELD_UNSPECIFIED: _ClassVar[SummaryField]
    SUMMARY_FIELD_LAST: _ClassVar[SummaryField]
    SUMMARY_FIELD_MIN: _ClassVar[SummaryField]
    SUMMARY_FIELD_MAX: _ClassVar[SummaryField]
DOWNSAMPLING_UNSPECIFIED: Downsampling
DOWNSAMPLING_MINMAX: Downsampling
DOWNSAMPLING_LTTB: Downsampling
DOWNSAMPLING_NONE: Downsampling
RANK_AGGREGATION_UNSPECIFIED: RankAggregation
RANK_AGGREGATION_PER_RANK: RankAggregation
RANK_AGGREGATION_MEAN: RankAggregation
RANK_AGGREGATION_MIN: RankAggregation
RANK_AGGREGATION_MAX: RankAggregation
GOAL_UNSPECIFIED: Goal
GOAL_MINIMIZE: Goal
GOAL_MAXIMIZE: Goal
SUMMARY_FIELD_UNSPECIFIED: SummaryField
SUMMARY_FIELD_LAST: SummaryField
SUMMARY_FIELD_MIN: SummaryField
SUMMARY_FIELD_MAX: SummaryField

class MetricSummary(_message.Message):
    __slots__ = ("key", "count", "first_step", "last_step", "last_value", "last_wall_time_ns", "min_value", "min_step", "max_value", "max_step", "last_attempt")
    KEY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_STEP_FIELD_NUMBER: _ClassVar[int]
    LAST_STEP_FIELD_NUMBER: _ClassVar[int]
    LAST_VALUE_FIELD_NUMBER: _ClassVar[int]
    LAST_WALL_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MIN_STEP_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_STEP_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    key: str
    count: int
    first_step: int
    last_step: int
    last_value: float
    last_wall_time_ns: int
    min_value: float
    min_step: int
    max_value: float
    max_step: int
    last_attempt: int
    def __init__(self, key: _Optional[str] = ..., count: _Optional[int] = ..., first_step: _Optional[int] = ..., last_step: _Optional[int] = ..., last_value: _Optional[float] = ..., last_wall_time_ns: _Optional[int] = ..., min_value: _Optional[float] = ..., min_step: _Optional[int] = ..., max_value: _Optional[float] = ..., max_step: _Optional[int] = ..., last_attempt: _Optional[int] = ...) -> None: ...

class ListMetricKeysRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class MetricKeyInfo(_message.Message):
    __slots__ = ("summary", "ranks")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    RANKS_FIELD_NUMBER: _ClassVar[int]
    summary: MetricSummary
    ranks: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, summary: _Optional[_Union[MetricSummary, _Mapping]] = ..., ranks: _Optional[_Iterable[int]] = ...) -> None: ...

class ListMetricKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[MetricKeyInfo]
    def __init__(self, keys: _Optional[_Iterable[_Union[MetricKeyInfo, _Mapping]]] = ...) -> None: ...

class GetMetricSeriesRequest(_message.Message):
    __slots__ = ("run_ids", "keys", "start_step", "end_step", "max_points", "downsampling", "aggregation", "rank")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    START_STEP_FIELD_NUMBER: _ClassVar[int]
    END_STEP_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    DOWNSAMPLING_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    keys: _containers.RepeatedScalarFieldContainer[str]
    start_step: int
    end_step: int
    max_points: int
    downsampling: Downsampling
    aggregation: RankAggregation
    rank: int
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., keys: _Optional[_Iterable[str]] = ..., start_step: _Optional[int] = ..., end_step: _Optional[int] = ..., max_points: _Optional[int] = ..., downsampling: _Optional[_Union[Downsampling, str]] = ..., aggregation: _Optional[_Union[RankAggregation, str]] = ..., rank: _Optional[int] = ...) -> None: ...

class MetricSeries(_message.Message):
    __slots__ = ("run_id", "key", "rank", "aggregation", "steps", "values", "wall_time_ns", "total_points", "downsampled")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_POINTS_FIELD_NUMBER: _ClassVar[int]
    DOWNSAMPLED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    key: str
    rank: int
    aggregation: RankAggregation
    steps: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    wall_time_ns: _containers.RepeatedScalarFieldContainer[int]
    total_points: int
    downsampled: bool
    def __init__(self, run_id: _Optional[str] = ..., key: _Optional[str] = ..., rank: _Optional[int] = ..., aggregation: _Optional[_Union[RankAggregation, str]] = ..., steps: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., wall_time_ns: _Optional[_Iterable[int]] = ..., total_points: _Optional[int] = ..., downsampled: _Optional[bool] = ...) -> None: ...

class GetMetricSeriesResponse(_message.Message):
    __slots__ = ("series",)
    SERIES_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[MetricSeries]
    def __init__(self, series: _Optional[_Iterable[_Union[MetricSeries, _Mapping]]] = ...) -> None: ...

class StreamMetricSeriesRequest(_message.Message):
    __slots__ = ("run_id", "key", "start_step", "end_step", "rank", "points_per_message")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    START_STEP_FIELD_NUMBER: _ClassVar[int]
    END_STEP_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    POINTS_PER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    key: str
    start_step: int
    end_step: int
    rank: int
    points_per_message: int
    def __init__(self, run_id: _Optional[str] = ..., key: _Optional[str] = ..., start_step: _Optional[int] = ..., end_step: _Optional[int] = ..., rank: _Optional[int] = ..., points_per_message: _Optional[int] = ...) -> None: ...

class StreamMetricSeriesResponse(_message.Message):
    __slots__ = ("rank", "steps", "values", "wall_time_ns")
    RANK_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    rank: int
    steps: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    wall_time_ns: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, rank: _Optional[int] = ..., steps: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., wall_time_ns: _Optional[_Iterable[int]] = ...) -> None: ...

class GetLatestMetricsRequest(_message.Message):
    __slots__ = ("run_ids", "keys")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class RunMetrics(_message.Message):
    __slots__ = ("run_id", "metrics")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    metrics: _containers.RepeatedCompositeFieldContainer[MetricSummary]
    def __init__(self, run_id: _Optional[str] = ..., metrics: _Optional[_Iterable[_Union[MetricSummary, _Mapping]]] = ...) -> None: ...

class GetLatestMetricsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunMetrics]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunMetrics, _Mapping]]] = ...) -> None: ...

class GetBestRunsRequest(_message.Message):
    __slots__ = ("experiment_ids", "key", "goal", "on", "limit", "filter")
    EXPERIMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    experiment_ids: _containers.RepeatedScalarFieldContainer[str]
    key: str
    goal: Goal
    on: SummaryField
    limit: int
    filter: str
    def __init__(self, experiment_ids: _Optional[_Iterable[str]] = ..., key: _Optional[str] = ..., goal: _Optional[_Union[Goal, str]] = ..., on: _Optional[_Union[SummaryField, str]] = ..., limit: _Optional[int] = ..., filter: _Optional[str] = ...) -> None: ...

class RankedRun(_message.Message):
    __slots__ = ("run_id", "run_name", "status", "experiment_id", "value", "step", "summary")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    run_name: str
    status: _experiments_pb2.RunStatus
    experiment_id: str
    value: float
    step: int
    summary: MetricSummary
    def __init__(self, run_id: _Optional[str] = ..., run_name: _Optional[str] = ..., status: _Optional[_Union[_experiments_pb2.RunStatus, str]] = ..., experiment_id: _Optional[str] = ..., value: _Optional[float] = ..., step: _Optional[int] = ..., summary: _Optional[_Union[MetricSummary, _Mapping]] = ...) -> None: ...

class GetBestRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RankedRun]
    def __init__(self, runs: _Optional[_Iterable[_Union[RankedRun, _Mapping]]] = ...) -> None: ...

class CompareRunsRequest(_message.Message):
    __slots__ = ("run_ids",)
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ParamCell(_message.Message):
    __slots__ = ("present", "value")
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    present: bool
    value: str
    def __init__(self, present: _Optional[bool] = ..., value: _Optional[str] = ...) -> None: ...

class ParamRow(_message.Message):
    __slots__ = ("key", "cells", "differs")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    DIFFERS_FIELD_NUMBER: _ClassVar[int]
    key: str
    cells: _containers.RepeatedCompositeFieldContainer[ParamCell]
    differs: bool
    def __init__(self, key: _Optional[str] = ..., cells: _Optional[_Iterable[_Union[ParamCell, _Mapping]]] = ..., differs: _Optional[bool] = ...) -> None: ...

class MetricCell(_message.Message):
    __slots__ = ("present", "summary")
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    present: bool
    summary: MetricSummary
    def __init__(self, present: _Optional[bool] = ..., summary: _Optional[_Union[MetricSummary, _Mapping]] = ...) -> None: ...

class MetricRow(_message.Message):
    __slots__ = ("key", "cells", "differs")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    DIFFERS_FIELD_NUMBER: _ClassVar[int]
    key: str
    cells: _containers.RepeatedCompositeFieldContainer[MetricCell]
    differs: bool
    def __init__(self, key: _Optional[str] = ..., cells: _Optional[_Iterable[_Union[MetricCell, _Mapping]]] = ..., differs: _Optional[bool] = ...) -> None: ...

class CompareRunsResponse(_message.Message):
    __slots__ = ("runs", "params", "metrics")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[_experiments_pb2.Run]
    params: _containers.RepeatedCompositeFieldContainer[ParamRow]
    metrics: _containers.RepeatedCompositeFieldContainer[MetricRow]
    def __init__(self, runs: _Optional[_Iterable[_Union[_experiments_pb2.Run, _Mapping]]] = ..., params: _Optional[_Iterable[_Union[ParamRow, _Mapping]]] = ..., metrics: _Optional[_Iterable[_Union[MetricRow, _Mapping]]] = ...) -> None: ...
