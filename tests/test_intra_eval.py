"""bench/intra_eval: rate is the whole .nvc file (as ``nvcodec encode`` writes it); JPEG is the RD bench's anchor."""

from __future__ import annotations

import numpy as np

import nvcodec
from nvcodec.bench import classical, intra_eval
from nvcodec.registry import load_codec


def test_intra_points_count_whole_file_bytes_and_jpeg_is_the_rd_anchor() -> None:
    image = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    codec = load_codec("intra-tiny", allow_untrained=True)
    points = intra_eval.intra_points(codec, "noise", image)
    assert [p.setting for p in points] == list(range(codec.quality_levels))
    for point in points[:2]:
        file_bytes = len(nvcodec.encode(image[None], codec="intra", model="intra-tiny", quality=point.setting))
        assert point.num_bytes == file_bytes and point.bpp == 8.0 * file_bytes / (40 * 56)
    (jpeg,) = intra_eval.jpeg_points("noise", image, (50,))
    assert jpeg.num_bytes == classical.encode(image[None], "jpeg", 50).num_bytes
