"""hypernerv tile seams: seam ratio, PSNR and real bytes per tiling, on frame sizes that are not multiples of 64.

For each input (first ``--frames`` frames, optionally downscaled by an integer factor and centre
cropped) and each tiling setting, encode with the shipped model and measure

- ``seam_ratio``: the mean absolute step of the reconstruction error across tile borders (between
  the last pixel before and the first pixel of a tile, and across each tile's end) divided by the
  mean absolute step everywhere else, both axes pooled; 1.0 = the grid is invisible in the error.
- ``seam_ratio_mid``: the same at the middle of each overlap (where a cross-fade is steepest).
- ``control_ratio``: the same at lines half a tile away from the borders (none within 4 px of
  one): what content alone gives on these frames with as few lines, i.e. the noise floor of the
  two ratios above (the reconstructions are blurred, so the error is mostly source detail).
- PSNR-RGB, tiles per frame, the smallest overlap between neighbours, real ``.nvc`` bytes and bpp.

Settings: ``shift`` = the version-1 layout with its default overlap (the largest <= tile/8 that adds
no tile; 0 on most sizes), and ``even`` with each ``--overlaps`` value (the version-2 default is
tile/8). ``--png-dir`` saves, per input, one frame decoded with each setting (and the source) for
looking at, with a 2x nearest-neighbour zoom of the top-left quarter.

    OMP_NUM_THREADS=1 python -m nvcodec.bench.hypernerv_seams bench/results/hypernerv-seams.json --png-dir /tmp/seams
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nvcodec import container, io, metrics, registry
from nvcodec.checkpoints import load_checkpoint
from nvcodec.geometry import TileGrid
from nvcodec.hypernerv.video import HyperNervVideoCodec
from nvcodec.interface import EncodedVideo

MEDIA = "../shared/media"
DEFAULT_INPUTS = (
    f"{MEDIA}/bigbuckbunny.mp4,2,640x272",
    "nvcodec/media/demo.mp4,1,",
    f"{MEDIA}/carphone_pristine.mp4,1,",
)


def load(spec: str, frames: int) -> tuple[str, np.ndarray]:
    """``"PATH,SCALE,WxH,START"`` -> (name, frames): ``frames`` frames from frame START (default 0),
    box-downscaled by the integer SCALE and centre-cropped to WxH (each optional)."""
    path, scale, crop, start = (spec.split(",") + ["", "", ""])[:4]
    first = int(start or 0)
    video = io.read_video(path, first, first + frames).frames.astype(np.float32)
    factor = int(scale or 1)
    if factor > 1:
        t, h, w, c = video.shape
        h, w = h // factor * factor, w // factor * factor
        video = video[:, :h, :w].reshape(t, h // factor, factor, w // factor, factor, c).mean((2, 4))
    video = np.clip(np.round(video), 0, 255).astype(np.uint8)
    if crop:
        width, height = (int(v) for v in crop.lower().split("x"))
        top, left = (video.shape[1] - height) // 2, (video.shape[2] - width) // 2
        video = np.ascontiguousarray(video[:, top : top + height, left : left + width])
    name = f"{Path(path).stem} {video.shape[2]}x{video.shape[1]}"
    return (f"{name} from frame {first}" if first else name), video


def _edges(starts: list[int], tile: int, length: int) -> list[int]:
    """Pixel indices p where a step e[p] - e[p-1] crosses a tile border (a start or an end)."""
    return sorted({s for s in starts if 0 < s < length} | {s + tile for s in starts if 0 < s + tile < length})


def _mids(starts: list[int], tile: int, length: int) -> list[int]:
    """Pixel indices p in the middle of each overlap between neighbouring tiles."""
    mids = {(b + a + tile) // 2 for a, b in zip(starts, starts[1:]) if a + tile > b}
    return sorted(p for p in mids if 0 < p < length)


def _controls(starts: list[int], tile: int, length: int) -> list[int]:
    """Lines half a tile from each tile border, at least 4 px from every border: a no-seam control."""
    edges = _edges(starts, tile, length)
    shifted = {p + tile // 2 for p in edges} | {p - tile // 2 for p in edges}
    return sorted(p for p in shifted if 0 < p < length and all(abs(p - e) > 4 for e in edges))


def seam_ratio(source: np.ndarray, decoded: np.ndarray, grid: TileGrid, where=_edges) -> float:
    """Mean |error step| across the grid's tile borders (``where``) / mean |error step| elsewhere."""
    error = decoded.astype(np.float32) - source.astype(np.float32)  # (T, H, W, 3)
    steps_x = np.abs(np.diff(error, axis=2)).mean(-1)  # (T, H, W-1): step into column p at index p-1
    steps_y = np.abs(np.diff(error, axis=1)).mean(-1)  # (T, H-1, W)
    height, width = source.shape[1:3]
    on_x = np.zeros(width - 1, bool)
    on_x[[p - 1 for p in where(grid.col_starts, grid.tile_w, width)]] = True
    on_y = np.zeros(height - 1, bool)
    on_y[[p - 1 for p in where(grid.row_starts, grid.tile_h, height)]] = True
    border = np.concatenate([steps_x[:, :, on_x].ravel(), steps_y[:, on_y, :].ravel()])
    other = np.concatenate([steps_x[:, :, ~on_x].ravel(), steps_y[:, ~on_y, :].ravel()])
    return float(border.mean() / other.mean()) if border.size and other.size else float("nan")


def _save_png(frame: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(frame).save(path)


def stream_bytes(codec: HyperNervVideoCodec, encoded: EncodedVideo, height: int, width: int) -> int:
    """Size of the complete ``.nvc`` stream of ``encoded`` (header, chunk table, CRCs): the real rate."""
    stream = container.pack_stream(
        codec="hypernerv", model=codec.model_name, weights=registry.weights_fingerprint(codec.model_name),
        width=width, height=height, fps=io.DEFAULT_FPS, params=dict(encoded.params), chunks=list(encoded.chunks),
    )
    return len(stream)


def start_report(
    module: str, argv: list[str] | None, model: str, quality: int, checkpoint: Path | None = None
) -> tuple[HyperNervVideoCodec, dict]:
    """The model's adapter (shipped weights, else the untrained test model; or a training checkpoint's
    weights) and the report's common fields."""
    spec = registry.get_spec(model)
    if checkpoint is not None:  # a hypernerv training run's weights, entropy tables rebuilt here
        trained = load_checkpoint(checkpoint, codec="hypernerv")
        trained.update_entropy_models()
        base = HyperNervVideoCodec(trained, model)
    else:
        base = registry.load_codec(model, "cpu", allow_untrained=not spec.has_weights)
    report: dict = {
        "command": f"python -m nvcodec.bench.{module} " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(), "device": "cpu"},
        "model": model,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "trained_weights": spec.has_weights or checkpoint is not None,
        "quality": quality,
        "inputs": [],
    }
    return base, report


def measure(codec: HyperNervVideoCodec, name: str, frames: np.ndarray, quality: int, png: Path | None, label: str) -> dict:
    height, width = frames.shape[1:3]
    started = time.perf_counter()
    encoded = codec.encode(frames, quality)
    seconds = time.perf_counter() - started
    size = stream_bytes(codec, encoded, height, width)
    grid = codec.grid_for(encoded.params, height, width)
    decoded = encoded.reconstruction
    if png is not None:
        frame = decoded[len(decoded) // 2]
        _save_png(frame, png / f"{label}.png")
        quarter = frame[: max(height // 2, 1), : max(width // 2, 1)]
        _save_png(quarter.repeat(2, 0).repeat(2, 1), png / f"{label}-zoom.png")
    return {
        "tiling": codec.tiling,
        "overlap_param": int(encoded.params["overlap"]),
        "params_version": int(encoded.params["version"]),
        "tiles": grid.num_tiles,
        "tile_rows": len(grid.row_starts),
        "tile_cols": len(grid.col_starts),
        "min_overlap": grid.min_overlap,
        "bytes": size,
        "bpp": metrics.bpp(size, len(frames), height, width),
        "psnr_rgb": metrics.psnr_rgb(frames, decoded),
        "seam_ratio": seam_ratio(frames, decoded, grid),
        "seam_ratio_mid": seam_ratio(frames, decoded, grid, _mids),
        "control_ratio": seam_ratio(frames, decoded, grid, _controls),
        "encode_s": seconds,
    }


def common_parser(doc: str, default_inputs: str, frames: int) -> argparse.ArgumentParser:
    """OUTPUT, --input (repeatable ``PATH,SCALE,WxH,START``), --frames, --model, --quality, --checkpoint."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--input", action="append", help=f"PATH,SCALE,WxH,START (repeatable; SCALE, WxH and START optional); default: {default_inputs}")
    parser.add_argument("--frames", type=int, default=frames)
    parser.add_argument("--model", default="hypernerv-small")
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=None, help="a hypernerv training checkpoint instead of the shipped weights")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = common_parser(__doc__, "bbb 640x272, demo 320x180, carphone 176x144", 16)
    parser.add_argument("--overlaps", default="4,8,16", help="minimum overlaps of the even tiling to measure")
    parser.add_argument("--png-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    base, report = start_report("hypernerv_seams", argv, args.model, args.quality, args.checkpoint)
    settings = [("shift", None)] + [("even", int(o)) for o in args.overlaps.split(",") if o]
    for item in args.input or DEFAULT_INPUTS:
        name, frames = load(item, args.frames)
        png = None
        if args.png_dir is not None:
            png = args.png_dir / name.replace(" ", "-")
            png.mkdir(parents=True, exist_ok=True)
            _save_png(frames[len(frames) // 2], png / "source.png")
        rows = []
        for tiling, overlap in settings:
            codec = HyperNervVideoCodec(base.model, args.model, overlap=overlap, tiling=tiling)
            label = f"{tiling}-{'default' if overlap is None else overlap}"
            row = {"setting": label, **measure(codec, name, frames, args.quality, png, label)}
            rows.append(row)
            print(f"{name:28s} {label:14s} tiles {row['tiles']:3d} min overlap {row['min_overlap']:2d}  {row['bytes']:7d} B "
                  f"{row['bpp']:.4f} bpp  PSNR {row['psnr_rgb']:.2f}  seam {row['seam_ratio']:.3f} (mid {row['seam_ratio_mid']:.3f}, control {row['control_ratio']:.3f})", flush=True)
        report["inputs"].append({"name": name, "spec": item, "frames": int(frames.shape[0]), "height": int(frames.shape[1]),
                                 "width": int(frames.shape[2]), "rows": rows})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
