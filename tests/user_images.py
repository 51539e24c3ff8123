"""Image files as users have them, written with PIL (and one hand-patched PNG header): what each should load as.

`write_user_images(folder)` -> {file name: expectation}; an expectation is ("rgb", (width, height)) for a file that
must decode to an RGB image of that size, or ("error", substring of the reason) for one that must be refused.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

BOMB_SIDE = 20000


def _patch_png_size(path: Path, width: int, height: int) -> None:
    """Rewrite the IHDR chunk of a PNG to claim another size (with a valid CRC): a decompression bomb's header."""
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def write_user_images(folder: Path) -> dict[str, tuple[str, object]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out: dict[str, tuple[str, object]] = {}

    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)  # pure red in CMYK
    out["cmyk.jpg"] = ("rgb", (40, 30))
    Image.fromarray(np.full((24, 32), 128 * 257, np.uint16)).save(folder / "grey16.png")  # a 16-bit PNG
    out["grey16.png"] = ("rgb", (32, 24))
    Image.fromarray(rng.integers(0, 255, (30, 20), np.uint8), "L").save(folder / "grey.png")
    out["grey.png"] = ("rgb", (20, 30))
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 255] + [200, 0, 0] * 255)  # index 0 = blue, made transparent below
    pal.paste(1, (0, 0, 8, 16))
    pal.save(folder / "palette_alpha.png", transparency=0)
    out["palette_alpha.png"] = ("rgb", (16, 16))
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, 16:] = 255  # left half black, right half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    Image.fromarray(stored, "RGB").save(folder / "exif_rotated.jpg", quality=95, exif=exif)
    out["exif_rotated.jpg"] = ("rgb", (16, 32))  # displayed: black on top, white below
    Image.new("RGB", (1, 1), (10, 200, 30)).save(folder / "one_pixel.png")
    out["one_pixel.png"] = ("rgb", (1, 1))
    Image.new("L", (8, 8), 0).save(folder / "bomb.png")
    _patch_png_size(folder / "bomb.png", BOMB_SIDE, BOMB_SIDE)
    out["bomb.png"] = ("error", "decompression-bomb")
    buf = folder / "truncated.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8), "RGB").save(buf, quality=90)
    buf.write_bytes(buf.read_bytes()[: buf.stat().st_size // 2])
    out["truncated.jpg"] = ("error", "truncated")
    (folder / "notes.jpg").write_text("a text file with an image extension\n")
    out["notes.jpg"] = ("error", "not an image")
    return out
