"""Image dimensions from the header, before any pixel buffer exists.

A 109 KB PNG can declare 30000x30000 pixels and a JPEG's SOF can claim 20000x20000: decoded, either costs
gigabytes. The services read the size here and refuse over-limit images before decoding. Only PNG and JPEG are
accepted (OpenCV would decode more formats, each a header format to trust).
"""

from __future__ import annotations

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size: SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field (TEM, RSTn)


class HeaderError(ValueError):
    """Not a PNG or JPEG, or its header is cut short or inconsistent."""


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) that decoding `data` would produce."""
    if data.startswith(PNG_SIGNATURE):
        return _png_size(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    raise HeaderError("not a PNG or JPEG image (only those two formats are accepted)")


def _png_size(data: bytes) -> tuple[int, int]:
    # The first chunk must be IHDR: length 13, then width and height as big-endian uint32.
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise HeaderError("PNG without an IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise HeaderError(f"JPEG marker expected at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE:
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker in _SOF:
            if position + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        if marker in (0xD9, 0xDA) or length < 2:  # end of image, or scan data before any frame header
            raise HeaderError("JPEG without a frame header (SOF) before its image data")
        position += 2 + length
    raise HeaderError("JPEG header cut short before its frame size")
