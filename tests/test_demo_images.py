"""tatar_core.images: loading (clear errors), downscaling, data URLs."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tatar_core.images import ImageLoadError, as_rgb, load_rgb, resize_max_side, to_data_url


def test_load_rgb_missing_and_corrupt_name_the_file(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError, match="nope.png.*file not found") as e:
        load_rgb(missing)
    assert e.value.path == str(missing) and e.value.reason == "file not found"
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(ImageLoadError, match="junk.jpg"):
        load_rgb(junk)
    good = tmp_path / "cut.png"
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    good.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # truncated file
    with pytest.raises(ImageLoadError, match="cut.png"):
        load_rgb(good)
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_rgb(tmp_path)


def test_load_rgb_converts_modes(tmp_path):
    rgba = Image.new("RGBA", (10, 6), (255, 0, 0, 0))  # fully transparent red → white
    rgba.save(tmp_path / "a.png")
    im = load_rgb(tmp_path / "a.png")
    assert im.mode == "RGB" and im.size == (10, 6) and im.getpixel((0, 0)) == (255, 255, 255)
    Image.new("L", (5, 5), 77).save(tmp_path / "g.png")
    assert load_rgb(tmp_path / "g.png").getpixel((2, 2)) == (77, 77, 77)
    Image.fromarray(np.arange(0, 65536, 2048, dtype=np.uint16).reshape(4, 8)).save(tmp_path / "d.png")
    im16 = np.asarray(load_rgb(tmp_path / "d.png"))  # 16-bit samples keep their brightness: v / 257, no stretch
    assert im16.dtype == np.uint8 and im16.min() == 0 and im16.max() == round(63488 / 257)


def test_resize_max_side_keeps_aspect_and_never_upscales():
    img = Image.new("RGB", (400, 100))
    out = resize_max_side(img, 200)
    assert out.size == (200, 50)
    assert resize_max_side(img, 1000) is img
    assert resize_max_side(Image.new("RGB", (1000, 3)), 10).size == (10, 1)
    with pytest.raises(ValueError):
        resize_max_side(img, 0)


@pytest.mark.parametrize("fmt,mime", [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_to_data_url_round_trip(tmp_path, fmt, mime):
    arr = np.random.default_rng(1).integers(0, 255, (120, 300, 3), dtype=np.uint8)
    p = tmp_path / "x.png"
    Image.fromarray(arr).save(p)
    url = to_data_url(p, max_side=150, fmt=fmt)
    head, b64 = url.split(",", 1)
    assert head == f"data:{mime};base64"
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert im.size == (150, 60)
    # PNG is lossless: a small image comes back pixel-identical
    if fmt == "PNG":
        small = Image.fromarray(arr[:20, :30])
        back = Image.open(io.BytesIO(base64.b64decode(to_data_url(small, 64).split(",", 1)[1])))
        assert np.array_equal(np.asarray(back), arr[:20, :30])
    with pytest.raises(ImageLoadError):
        to_data_url(tmp_path / "missing.png", 64)


def test_as_rgb_accepts_images_and_paths(tmp_path):
    Image.new("L", (3, 3), 9).save(tmp_path / "l.png")
    assert as_rgb(Image.new("L", (3, 3), 9)).mode == "RGB"
    assert as_rgb(str(tmp_path / "l.png")).getpixel((0, 0)) == (9, 9, 9)
