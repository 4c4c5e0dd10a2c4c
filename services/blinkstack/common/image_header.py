"""Image dimensions from the header, before any pixel buffer exists.

A 109 KB PNG can declare 30000x30000 pixels and a JPEG's SOF can claim 20000x20000: decoded, either costs
gigabytes. The services read the size here and refuse over-limit images before decoding. Only PNG and JPEG are
accepted (OpenCV would decode more formats, each a header format to trust).

A progressive JPEG is decoded once per scan: a 99 KB file that repeats its last scan 1,000 times costs seconds of
CPU that no deadline stops. Scans are counted from the markers (entropy-coded data never contains FF DA: an FF
there is followed by 00 or a restart marker), and more than MAX_JPEG_SCANS are refused.
"""

from __future__ import annotations

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size: SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field (TEM, RSTn)
# libjpeg's progressive scripts use 6 (gray) or 10 (colour) scans; the JPEG standard allows no more than a few
# dozen useful ones (successive approximation of 64 coefficients over 3 components).
MAX_JPEG_SCANS = 32


class HeaderError(ValueError):
    """Not a PNG or JPEG, or its header is cut short or inconsistent."""


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) that decoding `data` would produce."""
    if data.startswith(PNG_SIGNATURE):
        return _png_size(data)
    if data.startswith(b"\xff\xd8"):
        size, header_end = _jpeg_size(data)
        scans = data.count(b"\xff\xda", header_end)
        if scans > MAX_JPEG_SCANS:
            raise HeaderError(f"a JPEG of {scans} scans (at most {MAX_JPEG_SCANS}; progressive camera JPEGs have ~10)")
        return size
    raise HeaderError("not a PNG or JPEG image (only those two formats are accepted)")


def _png_size(data: bytes) -> tuple[int, int]:
    # The first chunk must be IHDR: length 13, then width and height as big-endian uint32.
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise HeaderError("PNG without an IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[tuple[int, int], int]:
    """(width, height), and where the header segments up to the frame header end (no scan starts before it)."""
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
            return (width, height), position + 2 + length
        if marker in (0xD9, 0xDA) or length < 2:  # end of image, or scan data before any frame header
            raise HeaderError("JPEG without a frame header (SOF) before its image data")
        position += 2 + length
    raise HeaderError("JPEG header cut short before its frame size")
