from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PixelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_FORMAT_UNSPECIFIED: _ClassVar[PixelFormat]
    PIXEL_FORMAT_GRAY8: _ClassVar[PixelFormat]
    PIXEL_FORMAT_BGR8: _ClassVar[PixelFormat]

class Eye(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EYE_UNSPECIFIED: _ClassVar[Eye]
    EYE_LEFT: _ClassVar[Eye]
    EYE_RIGHT: _ClassVar[Eye]

class EyeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EYE_STATE_UNSPECIFIED: _ClassVar[EyeState]
    EYE_STATE_OPEN: _ClassVar[EyeState]
    EYE_STATE_CLOSED: _ClassVar[EyeState]
    EYE_STATE_UNKNOWN: _ClassVar[EyeState]

class UnknownReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN_REASON_UNSPECIFIED: _ClassVar[UnknownReason]
    UNKNOWN_REASON_NO_FACE: _ClassVar[UnknownReason]
    UNKNOWN_REASON_EYE_TOO_SMALL: _ClassVar[UnknownReason]
    UNKNOWN_REASON_EYE_OUTSIDE_FRAME: _ClassVar[UnknownReason]
    UNKNOWN_REASON_LOW_CONFIDENCE_DETECTION: _ClassVar[UnknownReason]
    UNKNOWN_REASON_MODEL_UNCERTAIN: _ClassVar[UnknownReason]
    UNKNOWN_REASON_NOT_AN_EYE: _ClassVar[UnknownReason]
PIXEL_FORMAT_UNSPECIFIED: PixelFormat
PIXEL_FORMAT_GRAY8: PixelFormat
PIXEL_FORMAT_BGR8: PixelFormat
EYE_UNSPECIFIED: Eye
EYE_LEFT: Eye
EYE_RIGHT: Eye
EYE_STATE_UNSPECIFIED: EyeState
EYE_STATE_OPEN: EyeState
EYE_STATE_CLOSED: EyeState
EYE_STATE_UNKNOWN: EyeState
UNKNOWN_REASON_UNSPECIFIED: UnknownReason
UNKNOWN_REASON_NO_FACE: UnknownReason
UNKNOWN_REASON_EYE_TOO_SMALL: UnknownReason
UNKNOWN_REASON_EYE_OUTSIDE_FRAME: UnknownReason
UNKNOWN_REASON_LOW_CONFIDENCE_DETECTION: UnknownReason
UNKNOWN_REASON_MODEL_UNCERTAIN: UnknownReason
UNKNOWN_REASON_NOT_AN_EYE: UnknownReason

class RawImage(_message.Message):
    __slots__ = ("pixels", "width", "height", "format")
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    pixels: bytes
    width: int
    height: int
    format: PixelFormat
    def __init__(self, pixels: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., format: _Optional[_Union[PixelFormat, str]] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("encoded", "raw")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawImage
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x", "y", "width", "height", "angle_deg")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ANGLE_DEG_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    width: float
    height: float
    angle_deg: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ..., angle_deg: _Optional[float] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class EyeLandmarks(_message.Message):
    __slots__ = ("outer_corner", "inner_corner", "upper_lid", "lower_lid", "iris_center", "aperture")
    OUTER_CORNER_FIELD_NUMBER: _ClassVar[int]
    INNER_CORNER_FIELD_NUMBER: _ClassVar[int]
    UPPER_LID_FIELD_NUMBER: _ClassVar[int]
    LOWER_LID_FIELD_NUMBER: _ClassVar[int]
    IRIS_CENTER_FIELD_NUMBER: _ClassVar[int]
    APERTURE_FIELD_NUMBER: _ClassVar[int]
    outer_corner: Point
    inner_corner: Point
    upper_lid: _containers.RepeatedCompositeFieldContainer[Point]
    lower_lid: _containers.RepeatedCompositeFieldContainer[Point]
    iris_center: Point
    aperture: float
    def __init__(self, outer_corner: _Optional[_Union[Point, _Mapping]] = ..., inner_corner: _Optional[_Union[Point, _Mapping]] = ..., upper_lid: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., lower_lid: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., iris_center: _Optional[_Union[Point, _Mapping]] = ..., aperture: _Optional[float] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("stream_id", "seq", "timestamp_us", "image", "run_id")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    seq: int
    timestamp_us: int
    image: Image
    run_id: int
    def __init__(self, stream_id: _Optional[str] = ..., seq: _Optional[int] = ..., timestamp_us: _Optional[int] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., run_id: _Optional[int] = ...) -> None: ...
