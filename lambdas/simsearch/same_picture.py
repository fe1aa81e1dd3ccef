"""Is this the same picture? A pixel check for the pairs a global embedding cannot separate.

A global embedding scores a 20 % crop or a small thumbnail of a photo about as high as another frame of
the same shoot (both 0.93–0.96 with MobileNetV2), so no cosine threshold finds nearly all near
duplicates without also taking those frames (docs/evaluation.md, "Near duplicates"). Pixels separate
them: in another frame a head or a hand has moved, while a crop, resize, re-compression or format
change of one frame keeps every pixel where it was, relative to the others.

The check compares small greyscale thumbnails (``thumbnail``: ``THUMBNAIL_SIDE`` pixels on the shorter
side): the central ``CENTRE_SHARE`` of one, at a few ``SCALES``, is slid over the other by normalised
cross-correlation (the measure of ``skimage.feature.match_template``, computed here with numpy's FFT,
which the Lambda bundle has anyway), both ways round. ``correlation`` is the best match, in [-1, 1].
Candidates come from the k-NN index above a low cosine; the check decides among them
(``simsearch.duplicates``). Its threshold was chosen on half of the near-duplicate benchmark and judged
on the other half.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from simsearch.preprocess import ImageLimits, decode_image

Thumbnail = npt.NDArray[np.float32]  # (height, width) greyscale in [0, 1]

THUMBNAIL_SIDE: Final = 64
"""Pixels on a thumbnail's shorter side: enough to see a head move, small enough to compare in ~1 ms."""

CENTRE_SHARE: Final = 0.7
"""The part of a thumbnail (each side) matched inside the other: survives crops of up to 15 % a side."""

SCALES: Final = (0.85, 0.92, 1.0, 1.08, 1.18)
"""Relative sizes tried: a crop makes the same content larger once both thumbnails have one height."""

REFINEMENTS: Final = (0.05, 0.02)
"""Steps of the two rounds that resize the best template's width and height apart (by ± step each)."""

_AROUND: Final = tuple((x, y) for x in (-1, 0, 1) for y in (-1, 0, 1) if (x, y) != (0, 0))

DRAFT_SIDE: Final = 4 * THUMBNAIL_SIDE
"""A JPEG decodes at reduced size down to this shorter side (libjpeg's DCT scaling): fast, and far
above the thumbnail's own resolution."""

UNIFORM_VARIANCE: Final = (0.5 / 255) ** 2
"""A window (or template) whose pixels vary less than this, per pixel, is uniform: it has no texture to
line up, and rounding would otherwise turn its near-zero variance into any correlation at all."""


def thumbnail(image: Image.Image) -> Thumbnail:
    """``image`` (upright, any mode) as greyscale with ``THUMBNAIL_SIDE`` pixels on its shorter side."""
    grey = image.convert("L")
    scale = THUMBNAIL_SIDE / min(grey.size)
    size = (max(THUMBNAIL_SIDE, round(grey.width * scale)), max(THUMBNAIL_SIDE, round(grey.height * scale)))
    resized = grey.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
    return (np.asarray(resized, dtype=np.float32) / 255).astype(np.float32)


def thumbnail_of(data: bytes, *, limits: ImageLimits) -> Thumbnail:
    """The thumbnail of an image's bytes, decoded as ingestion decodes them (EXIF orientation applied).

    Raises what ``decode_image`` raises for bytes that are not a usable image.
    """
    return thumbnail(decode_image(data, limits=limits, min_side=DRAFT_SIDE).rgb)


def correlation(one: Thumbnail, other: Thumbnail) -> float:
    """How well the two thumbnails' pixels line up: the best normalised cross-correlation of either's
    centre, resized, anywhere inside the other. 1 for the same pixels; a uniform image matches nothing (0).

    First each way round at each of ``SCALES``; then, from the best of those, the template's width and
    height are resized apart (``REFINEMENTS``): a crop cuts width and height by different shares, so no
    single scale lines up both, and a duplicate left misaligned scores like another frame.
    """
    best, image, source, scale = -1.0, _Searched(one), other, (1.0, 1.0)
    for candidate_image, candidate_source in ((image, other), (_Searched(other), one)):
        for each in SCALES:
            score = candidate_image.best(_centre(_rescaled(candidate_source, (each, each))))
            if score > best:
                best, image, source, scale = score, candidate_image, candidate_source, (each, each)
    for step in REFINEMENTS:
        centre = scale
        for x_step, y_step in _AROUND:
            tried = (centre[0] * (1 + x_step * step), centre[1] * (1 + y_step * step))
            score = image.best(_centre(_rescaled(source, tried)))
            if score > best:
                best, scale = score, tried
    return best


def match(image: npt.NDArray[np.floating], template: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """The normalised cross-correlation of ``template`` at every position where it fits inside
    ``image`` (shape: image minus template plus one, each axis): ``match_template``'s "valid" output.

    Positions where the image window or the template is uniform (``UNIFORM_VARIANCE``) have no defined
    correlation: 0.
    """
    return _Searched(image).match(template)


class _Searched:
    """An image templates are matched in: its spectrum and summed-area tables are computed once."""

    def __init__(self, image: npt.NDArray[np.floating]) -> None:
        pixels = np.asarray(image, dtype=np.float64)
        self.shape = pixels.shape
        self._spectrum = np.fft.rfft2(pixels)
        self._sums = _summed_area(pixels)
        self._sums2 = _summed_area(pixels * pixels)

    def best(self, template: npt.NDArray[np.floating]) -> float:
        """The best correlation of ``template`` anywhere inside; -1 when it does not fit."""
        if template.shape[0] > self.shape[0] or template.shape[1] > self.shape[1]:
            return -1.0
        return float(self.match(template).max())

    def match(self, template: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        height, width = template.shape
        pixels = np.asarray(template, dtype=np.float64)
        centred = pixels - pixels.mean()  # in float64: a float32 mean would leave the sum of centred non-zero
        template_ssd = float(np.sum(centred * centred))
        rows, columns = self.shape[0] - height + 1, self.shape[1] - width + 1
        response = np.zeros((rows, columns))
        uniform = UNIFORM_VARIANCE * centred.size
        if template_ssd <= uniform:
            return response
        # The template's mean is zero, so sum(window · centred) is already the centred numerator. A
        # correlation by FFT at the image's own size: every kept position fits without wrapping round.
        spectrum = self._spectrum * np.conj(np.fft.rfft2(centred, s=self.shape))
        numerator = np.fft.irfft2(spectrum, s=self.shape)[:rows, :columns]
        window_sum = _windows(self._sums, height, width)
        window_sum2 = _windows(self._sums2, height, width)
        variance_sum = window_sum2 - window_sum * window_sum / centred.size
        defined = variance_sum > uniform
        response[defined] = numerator[defined] / np.sqrt(variance_sum[defined] * template_ssd)
        return np.clip(response, -1.0, 1.0, out=response)  # rounding must not pass Cauchy-Schwarz's bound


def _summed_area(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    table = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    table[1:, 1:] = values.cumsum(axis=0).cumsum(axis=1)
    return table


def _windows(table: npt.NDArray[np.float64], height: int, width: int) -> npt.NDArray[np.float64]:
    """The sum of each ``height`` × ``width`` window that fits, from a summed-area table."""
    below, above = table[height:], table[:-height]
    return below[:, width:] - above[:, width:] - below[:, :-width] + above[:, :-width]


def _rescaled(thumb: Thumbnail, scale: tuple[float, float]) -> Thumbnail:
    if scale == (1.0, 1.0):
        return thumb
    size = (max(8, round(thumb.shape[1] * scale[0])), max(8, round(thumb.shape[0] * scale[1])))
    return np.asarray(Image.fromarray(thumb).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def _centre(thumb: Thumbnail) -> Thumbnail:
    height, width = thumb.shape
    keep_height, keep_width = int(height * CENTRE_SHARE), int(width * CENTRE_SHARE)
    top, left = (height - keep_height) // 2, (width - keep_width) // 2
    return thumb[top : top + keep_height, left : left + keep_width]
