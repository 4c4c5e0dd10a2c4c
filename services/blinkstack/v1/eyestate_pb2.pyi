from blinkstack.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CropBatch(_message.Message):
    __slots__ = ("crops",)
    CROPS_FIELD_NUMBER: _ClassVar[int]
    crops: _containers.RepeatedCompositeFieldContainer[_types_pb2.Image]
    def __init__(self, crops: _Optional[_Iterable[_Union[_types_pb2.Image, _Mapping]]] = ...) -> None: ...

class FrameWithBoxes(_message.Message):
    __slots__ = ("frame", "eye_boxes")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    EYE_BOXES_FIELD_NUMBER: _ClassVar[int]
    frame: _types_pb2.Image
    eye_boxes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Box]
    def __init__(self, frame: _Optional[_Union[_types_pb2.Image, _Mapping]] = ..., eye_boxes: _Optional[_Iterable[_Union[_types_pb2.Box, _Mapping]]] = ...) -> None: ...

class ClassifyEyesRequest(_message.Message):
    __slots__ = ("crops", "frame")
    CROPS_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    crops: CropBatch
    frame: FrameWithBoxes
    def __init__(self, crops: _Optional[_Union[CropBatch, _Mapping]] = ..., frame: _Optional[_Union[FrameWithBoxes, _Mapping]] = ...) -> None: ...

class EyeStateResult(_message.Message):
    __slots__ = ("prob_open", "state", "reason", "prob_eye")
    PROB_OPEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PROB_EYE_FIELD_NUMBER: _ClassVar[int]
    prob_open: float
    state: _types_pb2.EyeState
    reason: _types_pb2.UnknownReason
    prob_eye: float
    def __init__(self, prob_open: _Optional[float] = ..., state: _Optional[_Union[_types_pb2.EyeState, str]] = ..., reason: _Optional[_Union[_types_pb2.UnknownReason, str]] = ..., prob_eye: _Optional[float] = ...) -> None: ...

class ClassifyEyesResponse(_message.Message):
    __slots__ = ("results", "model")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[EyeStateResult]
    model: ModelRef
    def __init__(self, results: _Optional[_Iterable[_Union[EyeStateResult, _Mapping]]] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model", "backend", "input_height", "input_width", "threshold", "max_crops_per_request", "sha256")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    INPUT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INPUT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_CROPS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    backend: str
    input_height: int
    input_width: int
    threshold: float
    max_crops_per_request: int
    sha256: str
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., backend: _Optional[str] = ..., input_height: _Optional[int] = ..., input_width: _Optional[int] = ..., threshold: _Optional[float] = ..., max_crops_per_request: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...
