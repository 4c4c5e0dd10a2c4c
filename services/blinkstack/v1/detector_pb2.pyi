from blinkstack.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DetectEyesRequest(_message.Message):
    __slots__ = ("frame", "eye_crops")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    EYE_CROPS_FIELD_NUMBER: _ClassVar[int]
    frame: _types_pb2.Frame
    eye_crops: bool
    def __init__(self, frame: _Optional[_Union[_types_pb2.Frame, _Mapping]] = ..., eye_crops: _Optional[bool] = ...) -> None: ...

class EyeDetection(_message.Message):
    __slots__ = ("eye", "center", "box", "crop", "unjudgeable", "landmarks")
    EYE_FIELD_NUMBER: _ClassVar[int]
    CENTER_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    UNJUDGEABLE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    eye: _types_pb2.Eye
    center: _types_pb2.Point
    box: _types_pb2.Box
    crop: _types_pb2.Image
    unjudgeable: _types_pb2.UnknownReason
    landmarks: _types_pb2.EyeLandmarks
    def __init__(self, eye: _Optional[_Union[_types_pb2.Eye, str]] = ..., center: _Optional[_Union[_types_pb2.Point, _Mapping]] = ..., box: _Optional[_Union[_types_pb2.Box, _Mapping]] = ..., crop: _Optional[_Union[_types_pb2.Image, _Mapping]] = ..., unjudgeable: _Optional[_Union[_types_pb2.UnknownReason, str]] = ..., landmarks: _Optional[_Union[_types_pb2.EyeLandmarks, _Mapping]] = ...) -> None: ...

class FaceDetection(_message.Message):
    __slots__ = ("track_id", "box", "score", "left_eye", "right_eye", "landmarks")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LEFT_EYE_FIELD_NUMBER: _ClassVar[int]
    RIGHT_EYE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    track_id: int
    box: _types_pb2.Box
    score: float
    left_eye: EyeDetection
    right_eye: EyeDetection
    landmarks: _containers.RepeatedCompositeFieldContainer[_types_pb2.Point]
    def __init__(self, track_id: _Optional[int] = ..., box: _Optional[_Union[_types_pb2.Box, _Mapping]] = ..., score: _Optional[float] = ..., left_eye: _Optional[_Union[EyeDetection, _Mapping]] = ..., right_eye: _Optional[_Union[EyeDetection, _Mapping]] = ..., landmarks: _Optional[_Iterable[_Union[_types_pb2.Point, _Mapping]]] = ...) -> None: ...

class DetectEyesResponse(_message.Message):
    __slots__ = ("stream_id", "seq", "timestamp_us", "frame_width", "frame_height", "faces", "timestamp_from_server", "landmarks_tracked")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    FRAME_WIDTH_FIELD_NUMBER: _ClassVar[int]
    FRAME_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FROM_SERVER_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_TRACKED_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    seq: int
    timestamp_us: int
    frame_width: int
    frame_height: int
    faces: _containers.RepeatedCompositeFieldContainer[FaceDetection]
    timestamp_from_server: bool
    landmarks_tracked: bool
    def __init__(self, stream_id: _Optional[str] = ..., seq: _Optional[int] = ..., timestamp_us: _Optional[int] = ..., frame_width: _Optional[int] = ..., frame_height: _Optional[int] = ..., faces: _Optional[_Iterable[_Union[FaceDetection, _Mapping]]] = ..., timestamp_from_server: _Optional[bool] = ..., landmarks_tracked: _Optional[bool] = ...) -> None: ...
