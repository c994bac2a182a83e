"""Video and image I/O: seeking reads, lossless FFV1, odd sizes, grayscale/RGBA conversion, metrics."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nvcodec import io, metrics
from nvcodec.errors import InputError
from nvcodec.geometry import TileGrid, crop_to, pad_to_multiple


def test_frame_range_equals_full_read(media) -> None:
    path = media / "bigbuckbunny.mp4"
    full = io.read_video(path, 0, 24).frames
    part = io.read_video(path, 10, 20)
    assert part.frames.shape == (10, 720, 1280, 3)
    assert np.array_equal(part.frames, full[10:20])
    assert part.fps == 25


def test_ffv1_mkv_round_trip_is_bit_exact(tmp_path, clip) -> None:
    io.write_video(tmp_path / "a.mkv", clip)
    back = io.read_video(tmp_path / "a.mkv")
    assert back.frames.dtype == np.uint8
    assert np.array_equal(back.frames, clip)


def test_odd_size_clip_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(1)
    odd = rng.integers(0, 256, (3, 143, 175, 3), dtype=np.uint8)
    io.write_video(tmp_path / "odd.mkv", odd)
    assert np.array_equal(io.read_video(tmp_path / "odd.mkv").frames, odd)
    io.write_video(tmp_path / "odd", odd)  # folder of PNGs
    assert sorted(p.name for p in (tmp_path / "odd").iterdir()) == [f"frame_00000{i}.png" for i in range(3)]
    assert np.array_equal(io.read_video(tmp_path / "odd" / "frame_000002.png").frames[0], odd[2])
    io.write_video(tmp_path / "odd.mp4", odd)
    assert io.read_video(tmp_path / "odd.mp4").frames.shape == (3, 144, 176, 3)  # H.264 4:2:0 pads to even


def test_grayscale_and_rgba_png_become_rgb(tmp_path) -> None:
    gray = np.arange(12 * 7, dtype=np.uint8).reshape(12, 7)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    rgb = io.read_video(tmp_path / "g.png").frames
    assert rgb.shape == (1, 12, 7, 3)
    assert np.array_equal(rgb[0, ..., 0], gray) and np.array_equal(rgb[0, ..., 2], gray)
    rgba = np.zeros((5, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # fully transparent -> white
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = io.read_video(tmp_path / "a.png").frames[0]
    assert tuple(out[1, 1]) == (200, 0, 0) and tuple(out[0, 0]) == (255, 255, 255)


def test_png_output_round_trip(tmp_path, clip) -> None:
    io.write_video(tmp_path / "one.png", clip[:1])
    assert np.array_equal(io.read_video(tmp_path / "one.png").frames, clip[:1])


def test_bad_sources_raise_input_error(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.mp4").write_bytes(b"")
    for path in (tmp_path / "missing.mp4", tmp_path, tmp_path / "notes.txt", tmp_path / "empty.mp4"):
        with pytest.raises(InputError):
            io.read_video(path)


def test_existing_output_kept_without_force(tmp_path, clip) -> None:
    target = tmp_path / "keep.mkv"
    target.write_bytes(b"precious")
    with pytest.raises(InputError, match="exists"):
        io.write_video(target, clip)
    assert target.read_bytes() == b"precious"
    io.write_video(target, clip, force=True)
    assert np.array_equal(io.read_video(target).frames, clip)


def test_failed_write_leaves_nothing(tmp_path) -> None:
    with pytest.raises(RuntimeError):
        with io.atomic_output(tmp_path / "x.mkv") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_pad_and_crop_back_odd_sizes() -> None:
    import torch

    x = torch.rand(2, 3, 143, 175)
    padded = pad_to_multiple(x, 64)
    assert padded.shape == (2, 3, 192, 192)
    assert torch.equal(crop_to(padded, 143, 175), x)
    assert torch.equal(padded[..., 142, 180], padded[..., 142, 174])  # replicated border


@pytest.mark.parametrize("overlap", [0, 8])
def test_tiles_cover_every_pixel(overlap: int) -> None:
    import torch

    grid = TileGrid(height=143, width=175, tile_h=64, tile_w=64, overlap=overlap)
    x = torch.rand(3, 143, 175)
    tiles = grid.split(x)
    assert tiles.shape == (grid.num_tiles, 3, 64, 64)
    assert torch.allclose(grid.merge(tiles), x, atol=1e-6)


def test_metrics_against_hand_values() -> None:
    a = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    b = a.copy()
    b[..., 0] = 255  # red channel fully off -> MSE = 255^2/3 -> PSNR = 10*log10(3)
    assert metrics.psnr_rgb(a, b) == pytest.approx(10 * np.log10(3))
    assert metrics.psnr_y(a, b) == pytest.approx(-20 * np.log10(0.299))
    assert metrics.psnr_rgb(a, a) == metrics.PSNR_CAP_DB
    assert metrics.bpp(1000, 2, 10, 40) == pytest.approx(10.0)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    assert metrics.ms_ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img.astype(int) + rng.integers(-40, 40, img.shape), 0, 255).astype(np.uint8)
    assert 0.0 < metrics.ms_ssim(img, noisy) < 0.99
