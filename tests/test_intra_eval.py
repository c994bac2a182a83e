"""bench/intra_eval: rate is the whole .nvc file (as ``nvcodec encode`` writes it); JPEG is the RD bench's anchor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nvcodec
from nvcodec.bench import classical, intra_eval
from nvcodec.metrics import psnr_rgb
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


def test_ceiling_points_compare_the_unquantised_transforms_with_the_real_stream() -> None:
    image = (np.random.default_rng(1).random((70, 90, 3)) * 255).astype(np.uint8)
    codec = load_codec("intra-tiny", allow_untrained=True)
    points = intra_eval.ceiling_points(codec, "noise", image)
    assert [p.quality for p in points] == list(range(codec.quality_levels))
    size = codec.model.config.pad_multiple
    cropped = np.ascontiguousarray(image[: 70 // size * size, : 90 // size * size])
    coded = intra_eval.intra_points(codec, "noise", cropped)
    assert [p.psnr_coded for p in points] == [p.psnr_rgb for p in coded]
    assert [p.bpp for p in points] == [p.bpp for p in coded]
    # the unquantised path is the model's own synthesis, not the decoded stream
    model = codec.model
    x = torch.from_numpy(cropped).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        x_hat = model.synthesis(model.analysis(x) * model._gain(0), 0)
    plain = (x_hat[0].clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert points[0].psnr_unquantised == psnr_rgb(cropped, plain)


def test_compare_reports_the_bd_rate_of_one_rd_json_against_another(tmp_path, capsys) -> None:
    """--compare reads two rd.json files (no model): NEW at 10 % fewer bytes for the same PSNR reads -10 %."""

    def write(name: str, scale: float, codec: str = "intra") -> str:
        points = [{"image": "a", "codec": codec, "setting": q, "num_bytes": int(1000 * scale * 2**q), "bpp": 0.1 * scale * 2**q,
                   "psnr_rgb": 25.0 + q} for q in range(4)]
        points.append({"image": "a", "codec": "jpeg", "setting": 50, "num_bytes": 1, "bpp": 9.0, "psnr_rgb": 1.0})
        path = tmp_path / name
        path.write_text(json.dumps({"source": name, "points": points}))
        return str(path)

    assert intra_eval.main(["--compare", write("old.json", 1.0), write("new.json", 0.9)]) == 0
    mean = [line for line in capsys.readouterr().out.splitlines() if "MEAN" in line][0]
    assert "-10.00 %" in mean
    # twins: a --reference-checkpoint run's points are "reference"; the learned codec of each file is compared
    assert intra_eval.main(["--compare", write("ref.json", 1.0, "reference"), write("new.json", 1.25)]) == 0
    out = capsys.readouterr().out
    assert "(intra) vs" in out and "(reference)" in out and "+25.00 %" in [line for line in out.splitlines() if "MEAN" in line][0]
    with pytest.raises(SystemExit) as exit_info:
        intra_eval.main(["--compare", str(tmp_path / "old.json"), str(tmp_path / "missing.json")])
    assert exit_info.value.code == 2
