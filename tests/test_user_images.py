"""Images users actually have: each decodes to the right RGB image (EXIF orientation applied) or is refused with a
clear reason; the dataset loaders decode every image once and skip the ones that do not decode, with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from user_images import write_user_images

from data_contracts.config.samples import DatasetSource
from tatar_core.images import ImageLoadError, load_rgb
from tatar_core.samples.readers import load_dataset


def test_each_kind_loads_as_rgb_or_is_refused_with_its_reason(tmp_path):
    expected = write_user_images(tmp_path)
    for name, (kind, what) in expected.items():
        if kind == "rgb":
            img = load_rgb(tmp_path / name)
            assert img.mode == "RGB" and img.size == what, name
        else:
            with pytest.raises(ImageLoadError) as e:
                load_rgb(tmp_path / name)
            assert what in e.value.reason and e.value.path.endswith(name), (name, e.value.reason)
    px = lambda name: np.asarray(load_rgb(tmp_path / name)).astype(int)  # noqa: E731
    assert np.abs(px("cmyk.jpg")[15, 20] - [255, 0, 0]).max() <= 8  # CMYK converted, not left inverted
    assert (px("grey16.png") == 128).all()  # 16-bit grey keeps its brightness (v/257), no stretching
    grey = px("grey.png")
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    pal = px("palette_alpha.png")
    assert (pal[:, :8] == [200, 0, 0]).all() and (pal[:, 8:] == 255).all()  # transparency flattened onto white
    rot = px("exif_rotated.jpg")
    assert rot[:12].mean() < 30 and rot[20:].mean() > 225  # displayed upright: black on top, white below
    assert (px("one_pixel.png")[0, 0] == [10, 200, 30]).all()


def test_loader_decodes_every_image_and_skips_the_ones_that_do_not_decode(tmp_path):
    root = tmp_path / "kadid"
    expected = write_user_images(root / "images")
    names = sorted(expected)
    lines = ["dist_img,ref_img,dmos,var"] + [f"{n},I01.png,{1 + i % 5},0" for i, n in enumerate(names)]
    (root / "dmos.csv").write_text("\n".join(lines) + "\n")
    res = load_dataset(DatasetSource(name="kadid", root=str(root), split="all"), progress=False)
    loaded = sorted(Path(s.image_path).name for s in res.samples)
    assert loaded == sorted(n for n, (k, _) in expected.items() if k == "rgb")
    reasons = {Path(s.item).name: s.reason for s in res.skipped}
    assert set(reasons) == {n for n, (k, _) in expected.items() if k == "error"}  # one row each, none lost
    for name, reason in reasons.items():
        assert expected[name][1] in reason, (name, reason)
