import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from tracker_client.pb import metrics_pb2 as _metrics_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Open(_message.Message):
    __slots__ = ("run_id", "writer_id", "rank", "attempt")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WRITER_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    writer_id: str
    rank: int
    attempt: int
    def __init__(self, run_id: _Optional[str] = ..., writer_id: _Optional[str] = ..., rank: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("seq", "columns")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    columns: _metrics_pb2.MetricColumns
    def __init__(self, seq: _Optional[int] = ..., columns: _Optional[_Union[_metrics_pb2.MetricColumns, _Mapping]] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("open", "batch")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    open: Open
    batch: Batch
    def __init__(self, open: _Optional[_Union[Open, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class Opened(_message.Message):
    __slots__ = ("committed_seq",)
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    committed_seq: int
    def __init__(self, committed_seq: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("committed_through_seq",)
    COMMITTED_THROUGH_SEQ_FIELD_NUMBER: _ClassVar[int]
    committed_through_seq: int
    def __init__(self, committed_through_seq: _Optional[int] = ...) -> None: ...

class BatchRejected(_message.Message):
    __slots__ = ("seq", "code", "message", "errors")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    code: int
    message: str
    errors: _containers.RepeatedCompositeFieldContainer[_metrics_pb2.PointError]
    def __init__(self, seq: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., errors: _Optional[_Iterable[_Union[_metrics_pb2.PointError, _Mapping]]] = ...) -> None: ...

class SlowDown(_message.Message):
    __slots__ = ("retry_after",)
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    retry_after: _duration_pb2.Duration
    def __init__(self, retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("opened", "ack", "rejected", "slow_down")
    OPENED_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    SLOW_DOWN_FIELD_NUMBER: _ClassVar[int]
    opened: Opened
    ack: Ack
    rejected: BatchRejected
    slow_down: SlowDown
    def __init__(self, opened: _Optional[_Union[Opened, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., rejected: _Optional[_Union[BatchRejected, _Mapping]] = ..., slow_down: _Optional[_Union[SlowDown, _Mapping]] = ...) -> None: ...

class LogMetricsRequest(_message.Message):
    __slots__ = ("writer", "batch")
    WRITER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    writer: Open
    batch: Batch
    def __init__(self, writer: _Optional[_Union[Open, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class LogMetricsResponse(_message.Message):
    __slots__ = ("committed_through_seq", "points_written")
    COMMITTED_THROUGH_SEQ_FIELD_NUMBER: _ClassVar[int]
    POINTS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    committed_through_seq: int
    points_written: int
    def __init__(self, committed_through_seq: _Optional[int] = ..., points_written: _Optional[int] = ...) -> None: ...
