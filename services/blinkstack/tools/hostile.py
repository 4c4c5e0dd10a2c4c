"""Hostile inputs for the fuzz tests and `bench/bench_hostile.py`: decode bombs and mutated messages."""

from __future__ import annotations

import random
import struct
import zlib

import cv2
import numpy as np


def png_bomb(side: int = 30000) -> bytes:
    """A real 1-bit gray PNG of side x side pixels (about 110 KB for 30000): 900 MB once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 64x64 JPEG whose frame header (SOF0) claims another size."""
    data = bytearray(cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def scan_bomb(side: int = 4096, repeats: int = 1000) -> bytes:
    """A real progressive gray JPEG of side x side pixels whose last scan is repeated `repeats` times (about 100 KB
    for 4096 and 1,000): every scan is decoded over the whole image, seconds of CPU in all."""
    gradient = np.tile(np.linspace(0, 255, side, dtype=np.float32), (side, 1)).astype(np.uint8)
    data = cv2.imencode(".jpg", gradient, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, 50])[1].tobytes()
    last_scan = data[data.rindex(b"\xff\xda") : -2]  # up to the end-of-image marker
    return data[:-2] + last_scan * repeats + b"\xff\xd9"


def mutations(valid: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Byte flips, truncations, insertions, varint bombs and random bytes around a valid message."""
    cases = []
    for _ in range(count):
        data = bytearray(valid)
        kind = rng.randrange(5)
        if kind == 0 and data:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:
            data = data[: rng.randrange(len(data) + 1)]
        elif kind == 2:
            position = rng.randrange(len(data) + 1)
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif kind == 3:
            data += bytes([rng.randrange(1, 16) << 3]) + b"\xff" * rng.randint(1, 11)  # over-long varints
        else:
            data = bytearray(rng.randbytes(rng.randint(0, 64)))
        cases.append(bytes(data))
    return cases
