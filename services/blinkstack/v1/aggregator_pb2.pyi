from blinkstack.v1 import eyestate_pb2 as _eyestate_pb2
from blinkstack.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_BLINK: _ClassVar[EventType]
    EVENT_TYPE_WINK_LEFT: _ClassVar[EventType]
    EVENT_TYPE_WINK_RIGHT: _ClassVar[EventType]
    EVENT_TYPE_LONG_CLOSURE: _ClassVar[EventType]
    EVENT_TYPE_DROWSINESS: _ClassVar[EventType]

class DrowsinessLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DROWSINESS_LEVEL_UNSPECIFIED: _ClassVar[DrowsinessLevel]
    DROWSINESS_LEVEL_AWAKE: _ClassVar[DrowsinessLevel]
    DROWSINESS_LEVEL_DROWSY: _ClassVar[DrowsinessLevel]
    DROWSINESS_LEVEL_ASLEEP: _ClassVar[DrowsinessLevel]

class EventPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_PHASE_UNSPECIFIED: _ClassVar[EventPhase]
    EVENT_PHASE_STARTED: _ClassVar[EventPhase]
    EVENT_PHASE_ENDED: _ClassVar[EventPhase]

class FrameStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAME_STATUS_UNSPECIFIED: _ClassVar[FrameStatus]
    FRAME_STATUS_PROCESSED: _ClassVar[FrameStatus]
    FRAME_STATUS_DUPLICATE: _ClassVar[FrameStatus]
    FRAME_STATUS_LATE: _ClassVar[FrameStatus]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_BLINK: EventType
EVENT_TYPE_WINK_LEFT: EventType
EVENT_TYPE_WINK_RIGHT: EventType
EVENT_TYPE_LONG_CLOSURE: EventType
EVENT_TYPE_DROWSINESS: EventType
DROWSINESS_LEVEL_UNSPECIFIED: DrowsinessLevel
DROWSINESS_LEVEL_AWAKE: DrowsinessLevel
DROWSINESS_LEVEL_DROWSY: DrowsinessLevel
DROWSINESS_LEVEL_ASLEEP: DrowsinessLevel
EVENT_PHASE_UNSPECIFIED: EventPhase
EVENT_PHASE_STARTED: EventPhase
EVENT_PHASE_ENDED: EventPhase
FRAME_STATUS_UNSPECIFIED: FrameStatus
FRAME_STATUS_PROCESSED: FrameStatus
FRAME_STATUS_DUPLICATE: FrameStatus
FRAME_STATUS_LATE: FrameStatus

class BlinkEvent(_message.Message):
    __slots__ = ("id", "stream_id", "track_id", "type", "phase", "start_us", "end_us", "duration_ms", "min_prob_open", "truncated", "key", "cursor", "level", "escalation")
    ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    START_US_FIELD_NUMBER: _ClassVar[int]
    END_US_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_PROB_OPEN_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    stream_id: str
    track_id: int
    type: EventType
    phase: EventPhase
    start_us: int
    end_us: int
    duration_ms: int
    min_prob_open: float
    truncated: bool
    key: str
    cursor: str
    level: DrowsinessLevel
    escalation: int
    def __init__(self, id: _Optional[str] = ..., stream_id: _Optional[str] = ..., track_id: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., phase: _Optional[_Union[EventPhase, str]] = ..., start_us: _Optional[int] = ..., end_us: _Optional[int] = ..., duration_ms: _Optional[int] = ..., min_prob_open: _Optional[float] = ..., truncated: _Optional[bool] = ..., key: _Optional[str] = ..., cursor: _Optional[str] = ..., level: _Optional[_Union[DrowsinessLevel, str]] = ..., escalation: _Optional[int] = ...) -> None: ...

class EyeReading(_message.Message):
    __slots__ = ("eye", "box", "prob_open", "state", "reason", "prob_eye", "landmarks")
    EYE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    PROB_OPEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PROB_EYE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    eye: _types_pb2.Eye
    box: _types_pb2.Box
    prob_open: float
    state: _types_pb2.EyeState
    reason: _types_pb2.UnknownReason
    prob_eye: float
    landmarks: _types_pb2.EyeLandmarks
    def __init__(self, eye: _Optional[_Union[_types_pb2.Eye, str]] = ..., box: _Optional[_Union[_types_pb2.Box, _Mapping]] = ..., prob_open: _Optional[float] = ..., state: _Optional[_Union[_types_pb2.EyeState, str]] = ..., reason: _Optional[_Union[_types_pb2.UnknownReason, str]] = ..., prob_eye: _Optional[float] = ..., landmarks: _Optional[_Union[_types_pb2.EyeLandmarks, _Mapping]] = ...) -> None: ...

class TrackedFace(_message.Message):
    __slots__ = ("track_id", "box", "score", "left_eye", "right_eye")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LEFT_EYE_FIELD_NUMBER: _ClassVar[int]
    RIGHT_EYE_FIELD_NUMBER: _ClassVar[int]
    track_id: int
    box: _types_pb2.Box
    score: float
    left_eye: EyeReading
    right_eye: EyeReading
    def __init__(self, track_id: _Optional[int] = ..., box: _Optional[_Union[_types_pb2.Box, _Mapping]] = ..., score: _Optional[float] = ..., left_eye: _Optional[_Union[EyeReading, _Mapping]] = ..., right_eye: _Optional[_Union[EyeReading, _Mapping]] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("detect_us", "classify_us", "aggregate_us")
    DETECT_US_FIELD_NUMBER: _ClassVar[int]
    CLASSIFY_US_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_US_FIELD_NUMBER: _ClassVar[int]
    detect_us: int
    classify_us: int
    aggregate_us: int
    def __init__(self, detect_us: _Optional[int] = ..., classify_us: _Optional[int] = ..., aggregate_us: _Optional[int] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("stream_id", "seq", "timestamp_us", "status", "frame_width", "frame_height", "faces", "events", "timings", "model", "timestamp_from_server", "faces_dropped")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FRAME_WIDTH_FIELD_NUMBER: _ClassVar[int]
    FRAME_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FROM_SERVER_FIELD_NUMBER: _ClassVar[int]
    FACES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    seq: int
    timestamp_us: int
    status: FrameStatus
    frame_width: int
    frame_height: int
    faces: _containers.RepeatedCompositeFieldContainer[TrackedFace]
    events: _containers.RepeatedCompositeFieldContainer[BlinkEvent]
    timings: StageTimings
    model: _eyestate_pb2.ModelRef
    timestamp_from_server: bool
    faces_dropped: int
    def __init__(self, stream_id: _Optional[str] = ..., seq: _Optional[int] = ..., timestamp_us: _Optional[int] = ..., status: _Optional[_Union[FrameStatus, str]] = ..., frame_width: _Optional[int] = ..., frame_height: _Optional[int] = ..., faces: _Optional[_Iterable[_Union[TrackedFace, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[BlinkEvent, _Mapping]]] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., model: _Optional[_Union[_eyestate_pb2.ModelRef, _Mapping]] = ..., timestamp_from_server: _Optional[bool] = ..., faces_dropped: _Optional[int] = ...) -> None: ...

class EyeObservation(_message.Message):
    __slots__ = ("stream_id", "track_id", "seq", "timestamp_us", "left_prob_open", "right_prob_open", "track_lost")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    LEFT_PROB_OPEN_FIELD_NUMBER: _ClassVar[int]
    RIGHT_PROB_OPEN_FIELD_NUMBER: _ClassVar[int]
    TRACK_LOST_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    track_id: int
    seq: int
    timestamp_us: int
    left_prob_open: float
    right_prob_open: float
    track_lost: bool
    def __init__(self, stream_id: _Optional[str] = ..., track_id: _Optional[int] = ..., seq: _Optional[int] = ..., timestamp_us: _Optional[int] = ..., left_prob_open: _Optional[float] = ..., right_prob_open: _Optional[float] = ..., track_lost: _Optional[bool] = ...) -> None: ...

class PublishEyeStatesRequest(_message.Message):
    __slots__ = ("observations",)
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    observations: _containers.RepeatedCompositeFieldContainer[EyeObservation]
    def __init__(self, observations: _Optional[_Iterable[_Union[EyeObservation, _Mapping]]] = ...) -> None: ...

class PublishSummary(_message.Message):
    __slots__ = ("accepted", "duplicates", "late", "events")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    late: int
    events: int
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., late: _Optional[int] = ..., events: _Optional[int] = ...) -> None: ...

class SubscribeBlinksRequest(_message.Message):
    __slots__ = ("stream_ids", "track_ids", "types", "after_id")
    STREAM_IDS_FIELD_NUMBER: _ClassVar[int]
    TRACK_IDS_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    stream_ids: _containers.RepeatedScalarFieldContainer[str]
    track_ids: _containers.RepeatedScalarFieldContainer[int]
    types: _containers.RepeatedScalarFieldContainer[EventType]
    after_id: str
    def __init__(self, stream_ids: _Optional[_Iterable[str]] = ..., track_ids: _Optional[_Iterable[int]] = ..., types: _Optional[_Iterable[_Union[EventType, str]]] = ..., after_id: _Optional[str] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("stream_id", "track_id")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    track_id: int
    def __init__(self, stream_id: _Optional[str] = ..., track_id: _Optional[int] = ...) -> None: ...

class TrackStats(_message.Message):
    __slots__ = ("stream_id", "track_id", "window_us", "blink_count", "blinks_per_minute", "perclos", "open_ratio", "mean_blink_duration_ms", "last_event", "last_timestamp_us", "drowsiness")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_US_FIELD_NUMBER: _ClassVar[int]
    BLINK_COUNT_FIELD_NUMBER: _ClassVar[int]
    BLINKS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    PERCLOS_FIELD_NUMBER: _ClassVar[int]
    OPEN_RATIO_FIELD_NUMBER: _ClassVar[int]
    MEAN_BLINK_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_FIELD_NUMBER: _ClassVar[int]
    LAST_TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    DROWSINESS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    track_id: int
    window_us: int
    blink_count: int
    blinks_per_minute: float
    perclos: float
    open_ratio: float
    mean_blink_duration_ms: float
    last_event: BlinkEvent
    last_timestamp_us: int
    drowsiness: DrowsinessLevel
    def __init__(self, stream_id: _Optional[str] = ..., track_id: _Optional[int] = ..., window_us: _Optional[int] = ..., blink_count: _Optional[int] = ..., blinks_per_minute: _Optional[float] = ..., perclos: _Optional[float] = ..., open_ratio: _Optional[float] = ..., mean_blink_duration_ms: _Optional[float] = ..., last_event: _Optional[_Union[BlinkEvent, _Mapping]] = ..., last_timestamp_us: _Optional[int] = ..., drowsiness: _Optional[_Union[DrowsinessLevel, str]] = ...) -> None: ...
