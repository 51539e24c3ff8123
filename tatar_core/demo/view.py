"""The embedded model's image processor: a native-resolution quality view beside a downscaled global view.

A Qwen-VL processor shrinks every picture to its pixel budget (`max_pixels`) before the tower sees it: at 112×112
pixels a 512×384 photo's noise and JPEG blocks are averaged away. IQA models give their backbone the image's own
pixels instead; `QualityViewImageProcessor` does so in the manner of FAST-VQA's fragments (Wu et al., "FAST-VQA:
Efficient End-to-End Video Quality Assessment with Fragment Sampling", ECCV 2022: a grid of mini-patches cut at
native resolution and spliced into one fixed-size input), and adds a downscaled whole image for what the fragments
lose (exposure and colour layout, composition: IAA needs it). The two are laid out on one canvas, so the model
sees one image and the token count stays fixed whatever the image size:

  quality view   S×S pixels, S = the largest multiple of 28 with S² ≤ max_pixels (112 for 12,544): an (S/14)² grid of
                 14×14 fragments, one per cell of an (S/14)×(S/14) grid over the image, each cut at native
                 resolution at the cell's centre with its origin snapped down to a multiple of `align` (8) pixels,
                 so JPEG's 8-px block borders and 8-px pixelation fall between local pixels 7 and 8 of every
                 fragment (the tower's grid filters, `tatar_core.demo.tower`). Each fragment is one tower patch, so
                 no filter ever straddles two fragments.
  global view    the whole image resized (PIL bicubic, which low-passes when it shrinks) to fit S×S with its aspect
                 kept, sides rounded to multiples of 28 (≥ 28), centred on a mid-grey S×S square below the quality
                 view. Canvas S wide × 2S high, the same layout for every shape: at S = 112, 16 quality tokens then
                 16 global ones (measured: beside-the-quality-view placement for portraits, which interleaves the two
                 kinds of tokens row by row, ranked portrait images 0.05–0.15 lower).
  marker         the global view's patch rows get +δ on the first and −δ on the second of the two (identical)
                 temporal copies of Qwen2.5-VL's patch layout (normalised units, δ = `marker`): any filter that
                 weighs both copies alike sees no change, while a filter of +1/−1 over the copies reads 2δ·n — the
                 hand-set tower uses it to keep the two views apart (`tatar_core.demo.tower`).

Images smaller than a fragment (14 px) are enlarged (nearest) to 14 px on that side. Real Qwen2.5-VL checkpoints
keep their own processor (dynamic resolution up to `max_pixels`); this one is saved with the embedded models only,
and vLLM, which counts image tokens itself, does not know it (score embedded models with the transformers engine).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from transformers import AutoImageProcessor, PretrainedConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

PATCH, MERGE, UNIT = 14, 2, 28
GREY = 128
MARKER = 0.25  # delta of the global view's marker, normalised pixel units


def view_side(max_pixels: int) -> int:
    """S: the largest multiple of 28 whose square fits the pixel budget (at least 28)."""
    return max(UNIT, int(np.sqrt(max_pixels)) // UNIT * UNIT)


def fragment_origins(length: int, cells: int, align: int = 8) -> list[int]:
    """Origins of the `cells` fragments along one side of `length` px (≥ PATCH): each cell's centre minus 7,
    snapped down to a multiple of `align` and kept inside the image."""
    last = (length - PATCH) // align * align
    return [min(last, max(0, int(((c + 0.5) * length / cells - PATCH / 2) // align * align))) for c in range(cells)]


def global_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(h, w) of the global view: fits side×side, aspect kept, multiples of 28 (≥ 28)."""
    s = side / max(height, width)
    return tuple(min(side, max(UNIT, int(round(v * s / UNIT)) * UNIT)) for v in (height, width))


def canvas(img: np.ndarray, side: int, align: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(canvas (H, W, 3) uint8, is_global (H/14, W/14) bool per patch) for one RGB image (h, w, 3) uint8."""
    h, w = img.shape[:2]
    if h < PATCH or w < PATCH:
        img = np.asarray(Image.fromarray(img).resize((max(w, PATCH), max(h, PATCH)), Image.Resampling.NEAREST))
        h, w = img.shape[:2]
    cells = side // PATCH
    ys, xs = fragment_origins(h, cells, align), fragment_origins(w, cells, align)
    quality = np.stack([np.concatenate([img[y : y + PATCH, x : x + PATCH] for x in xs], axis=1) for y in ys])
    quality = quality.reshape(side, side, 3)
    gh, gw = global_size(h, w, side)
    small = np.asarray(Image.fromarray(img).resize((gw, gh), Image.Resampling.BICUBIC))
    glob = np.full((side, side, 3), GREY, np.uint8)
    y0, x0 = (side - gh) // 2 // UNIT * UNIT, (side - gw) // 2 // UNIT * UNIT
    glob[y0 : y0 + gh, x0 : x0 + gw] = small
    out = np.concatenate([quality, glob], axis=0)
    mask = np.zeros((2 * side // PATCH, side // PATCH), bool)
    mask[side // PATCH :] = True
    return out, mask


def patch_order(mask: np.ndarray) -> np.ndarray:
    """A per-patch (grid_h, grid_w) array in the row order of Qwen2-VL's patchify: merge groups in raster order,
    2×2 patches inside each."""
    gh, gw = mask.shape
    return mask.reshape(gh // MERGE, MERGE, gw // MERGE, MERGE).transpose(0, 2, 1, 3).reshape(-1)


class QualityViewImageProcessor(Qwen2VLImageProcessorPil):
    """Qwen2-VL's PIL image processor with the canvas of the module docstring in place of its resize.

    `size["longest_edge"]` (`model.max_pixels`) sets S; `align` the fragment grid; `marker` δ."""

    def __init__(self, align: int = 8, marker: float = MARKER, **kwargs):
        super().__init__(**kwargs)
        self.align = int(align)
        self.marker = float(marker)

    def _preprocess(
        self,
        images,
        do_resize,
        size,
        resample,
        do_rescale,
        rescale_factor,
        do_normalize,
        image_mean,
        image_std,
        patch_size,
        temporal_patch_size,
        merge_size,
        return_tensors,
        **kwargs,
    ):
        from transformers.image_processing_utils import BatchFeature

        if (patch_size, merge_size, temporal_patch_size) != (PATCH, MERGE, 2):
            raise ValueError("QualityViewImageProcessor: needs patch 14, merge 2, temporal patch 2")
        side = view_side(size.longest_edge)
        rows, grids = [], []
        for image in images:
            rgb = np.moveaxis(np.asarray(image), 0, -1)
            if rgb.dtype != np.uint8:
                rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
            canv, mask = canvas(rgb, side, self.align)
            x = np.moveaxis(canv, -1, 0).astype(np.float32)
            if do_rescale:
                x = self.rescale(x, rescale_factor)
            if do_normalize:
                x = self.normalize(x, image_mean, image_std)
            patches, gh, gw = self.patchify(x, patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2)
            patches = np.array(patches).reshape(-1, 3, 2, PATCH * PATCH)
            glob = patch_order(mask)
            patches[glob, :, 0] += self.marker
            patches[glob, :, 1] -= self.marker
            rows.append(patches.reshape(patches.shape[0], -1))
            grids.append([1, gh, gw])
        return BatchFeature(
            data={"pixel_values": np.concatenate(rows), "image_grid_thw": np.array(grids, np.int64)},
            tensor_type=return_tensors,
        )

    def get_number_of_image_patches(self, height: int, width: int, images_kwargs=None) -> int:
        side = view_side((images_kwargs or {}).get("max_pixels") or self.size["longest_edge"])
        return 2 * (side // PATCH) ** 2


class _ViewConfig(PretrainedConfig):
    """A config class no checkpoint uses: registering under it lets `AutoImageProcessor` resolve the class by its
    saved name without touching what real Qwen2.5-VL configs load."""

    model_type = "tatar_quality_view"


_registered = False


def register_view_processor() -> None:
    """Make `preprocessor_config.json` files naming `QualityViewImageProcessor` loadable (idempotent)."""
    global _registered
    if not _registered:
        AutoImageProcessor.register(
            _ViewConfig,
            image_processor_classes={"pil": QualityViewImageProcessor, "torchvision": QualityViewImageProcessor},
            exist_ok=True,
        )
        _registered = True


register_view_processor()

__all__ = [
    "QualityViewImageProcessor",
    "register_view_processor",
    "canvas",
    "fragment_origins",
    "global_size",
    "view_side",
]
