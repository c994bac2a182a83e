"""Hypernerv encode-speed benchmark: single pass vs refinement vs per-video NeRV training; decoding.

    python -m nvcodec.bench.hypernerv_encode_speed OUT.json [--video PATH] [--quality Q]
        [--refine-steps 10,50,200] [--baseline-budget SECONDS] [--threads N]

Measures on one video (default: the shared carphone clip, all frames, CPU):
1. every quality level: stream bytes (a complete ``.nvc`` from ``nvcodec.encode``), bpp, PSNR-RGB,
   encode and decode fps (single hypernetwork pass, ``refine_steps=0``);
2. at ``--quality``, on the first ``--speed-frames`` frames: PSNR / bytes / wall time of the
   forward pass and of K refinement steps;
3. on the same frames, the from-scratch per-video NeRV baseline (``nvcodec.bench.baseline``, the same decoder
   architecture) trained for growing wall times until it reaches the forward pass's PSNR, and the
   resulting speed-up (baseline time to that PSNR / forward-pass encode time);
4. the seam penalty: PSNR with blended tile overlap vs without;
5. decoding parallelism: frames/s with all frames and tiles of a clip in one batched pass (the
   codec's path) vs one frame at a time (tiles batched) vs one frame of one tile at a time.
Writes JSON to OUT.json.
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

import nvcodec
from nvcodec import io, metrics, registry
from nvcodec.bench.baseline import fit_per_video_nerv
from nvcodec.hypernerv.model import REFINE_LR, CompressedClip

DEFAULT_VIDEO = "../shared/media/carphone_pristine.mp4"


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def rate_points(frames: np.ndarray, model_name: str, levels: int) -> list[dict]:
    """Every quality level through the public API: real stream bytes, PSNR, encode/decode fps."""
    num_frames, height, width, _ = frames.shape
    points = []
    for quality in range(levels):
        stream, encode_s = _timed(lambda: nvcodec.encode(frames, codec="hypernerv", quality=quality, model=model_name))
        decoded, decode_s = _timed(lambda: nvcodec.decode(stream))
        points.append(
            {
                "quality": quality,
                "bytes": len(stream),
                "bpp": 8 * len(stream) / (num_frames * height * width),
                "psnr_rgb": metrics.psnr_rgb(frames, decoded),
                "psnr_y": metrics.psnr_y(frames, decoded),
                "encode_s": encode_s,
                "encode_fps": num_frames / encode_s,
                "decode_s": decode_s,
                "decode_fps": num_frames / decode_s,
            }
        )
    return points


def bitstream_seconds(frames: np.ndarray, codec, quality: int, refine_steps: int) -> float:
    """Wall time to produce the chunk payloads only (hypernetwork [+ refinement] + rANS + packing), no reconstruction."""
    start = time.perf_counter()
    for _ in codec.compress_clips(frames, quality, refine_steps=refine_steps):
        pass
    return time.perf_counter() - start


def refine_table(frames: np.ndarray, codec, quality: int, steps_list: list[int]) -> list[dict]:
    """PSNR vs encode wall time: the forward pass (K=0) and K refinement steps.

    ``encode_s``: the codec's full encode (tokens + the encoder-side reconstruction it returns);
    ``bitstream_s``: tokens only (what a sender needs before transmitting).
    """
    num_frames, height, width, _ = frames.shape
    rows = []
    for steps in [0, *steps_list]:
        encoded, encode_s = _timed(lambda: codec.encode(frames, quality, refine_steps=steps))
        payload = sum(len(c.payload) for c in encoded.chunks)
        rows.append(
            {
                "method": "forward" if steps == 0 else f"forward+{steps} refine",
                "refine_steps": steps,
                "encode_s": encode_s,
                "bitstream_s": bitstream_seconds(frames, codec, quality, steps) if steps <= 10 else None,
                "psnr_rgb": metrics.psnr_rgb(frames, encoded.reconstruction),
                "payload_bytes": payload,
                "payload_bpp": 8 * payload / (num_frames * height * width),
            }
        )
    return rows


def seam_penalty(frames: np.ndarray, model, model_name: str, quality: int) -> list[dict]:
    """PSNR / bytes / tiles without tile overlap ("shift" tiling, overlap 0) and with the default
    "even" tiling (>= tile_size / 16 overlap, blended seams); ``bench.hypernerv_seams`` measures the seams."""
    from nvcodec.hypernerv.video import HyperNervVideoCodec

    num_frames, height, width, _ = frames.shape
    rows = []
    for overlap, tiling in ((0, "shift"), (None, "even")):
        codec = HyperNervVideoCodec(model, model_name, overlap=overlap, tiling=tiling)
        encoded = codec.encode(frames, quality)
        payload = sum(len(c.payload) for c in encoded.chunks)
        rows.append(
            {
                "overlap": int(encoded.params["overlap"]),
                "tiling": tiling,
                "tiles": int(encoded.stats["num_tiles"]),
                "psnr_rgb": metrics.psnr_rgb(frames, encoded.reconstruction),
                "payload_bytes": payload,
                "payload_bpp": 8 * payload / (num_frames * height * width),
            }
        )
    return rows


def decode_parallelism(frames: np.ndarray, codec, quality: int, repeats: int = 2) -> dict:
    """Decode fps: whole clip batched (codec path) vs frame by frame vs frame-and-tile by frame-and-tile."""
    model = codec.model
    num_frames, height, width, _ = frames.shape
    encoded = codec.encode(frames, quality)
    clip_len = model.config.clip_len
    stream = codec.parse_params(encoded.params, height, width)
    grid = stream.grid

    def batched() -> None:
        for chunk in encoded.chunks:
            codec.decode_chunk(stream, chunk, height, width)

    if model.config.hypernet.temporal_terms:
        raise ValueError("the frame-by-frame decode rows do not apply a temporal_terms model's stem offsets")

    def weights_of(chunk) -> tuple[dict, int]:
        from nvcodec.hypernerv.video import unpack_payload

        clip = unpack_payload(chunk.payload, stream, chunk.num_frames, model.num_weight_tokens, model.config.hypernet.code_channels)
        qualities = torch.full((len(clip.strings),), clip.quality, dtype=torch.long)
        with torch.no_grad():
            codes = model.token_coder.decompress(clip.strings, clip.quality) / model.gains(qualities)
            return model.decoder.fused_weights(model.token_decoder(codes)), clip.num_frames

    def per_frame() -> None:
        with torch.no_grad():
            for chunk in encoded.chunks:
                weights, n = weights_of(chunk)
                for index in range(n):
                    tiles = model.decoder.decode(weights, torch.tensor([index / clip_len]))  # (B, 1, 3, t, t)
                    grid.merge(tiles)

    def per_frame_tile() -> None:
        with torch.no_grad():
            for chunk in encoded.chunks:
                weights, n = weights_of(chunk)
                for index in range(n):
                    outs = [model.decoder.decode({k: v[b : b + 1] for k, v in weights.items()}, torch.tensor([index / clip_len])) for b in range(grid.num_tiles)]
                    grid.merge(torch.cat(outs))

    result: dict = {}
    for name, fn in [("batched_clip", batched), ("frame_by_frame", per_frame), ("frame_and_tile_sequential", per_frame_tile)]:
        fn()  # warm-up
        best = min(_timed(fn)[1] for _ in range(repeats))
        result[name] = {"seconds": best, "fps": num_frames / best}
    result["speedup_batched_vs_frame_by_frame"] = result["frame_by_frame"]["seconds"] / result["batched_clip"]["seconds"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--video", default=DEFAULT_VIDEO)
    parser.add_argument("--model", default="hypernerv-small")
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--refine-steps", default="10,50,200")
    parser.add_argument("--baseline-budget", type=float, default=1200.0, help="max seconds of baseline training")
    parser.add_argument("--frames", type=int, default=None, help="use only the first N frames")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--refine-lr", type=float, default=REFINE_LR)
    parser.add_argument("--speed-frames", type=int, default=24, help="first N frames for the refine/baseline table (0 = all)")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = io.read_video(args.video, 0, args.frames).frames
    spec = registry.get_spec(args.model)
    codec = registry.load_codec(args.model, "cpu", allow_untrained=not spec.has_weights)
    codec.refine_lr = args.refine_lr
    report: dict = {
        "command": "python -m nvcodec.bench.hypernerv_encode_speed " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(), "device": "cpu"},
        "video": {"path": args.video, "frames": int(frames.shape[0]), "height": int(frames.shape[1]), "width": int(frames.shape[2])},
        "model": args.model,
        "quality": args.quality,
        "refine_lr": args.refine_lr,
        "trained_weights": spec.has_weights,
    }
    report["rate_points"] = rate_points(frames, args.model, codec.quality_levels)
    steps = [int(s) for s in args.refine_steps.split(",") if s]
    speed_frames = frames[: args.speed_frames] if args.speed_frames else frames
    report["encode_speed_frames"] = int(speed_frames.shape[0])
    report["encode_speed"] = refine_table(speed_frames, codec, args.quality, steps)
    report["seams"] = seam_penalty(frames, codec.model, args.model, args.quality)
    forward = report["encode_speed"][0]
    if not args.skip_baseline:
        torch.manual_seed(0)
        # Train until the best encode-speed row's PSNR (or the budget), so every row gets the
        # baseline time to the same PSNR.
        best = max(row["psnr_rgb"] for row in report["encode_speed"])
        baseline = fit_per_video_nerv(speed_frames, codec.model.config.decoder, args.baseline_budget, target_psnr=best)
        for row in report["encode_speed"]:
            reached = next((p for p in baseline.points if p.psnr >= row["psnr_rgb"]), None)
            row["baseline_s_to_same_psnr"] = reached.train_seconds if reached else None
            row["speedup_vs_baseline"] = (reached.train_seconds / row["encode_s"]) if reached else None
        reached = next((p for p in baseline.points if p.psnr >= forward["psnr_rgb"]), None)
        report["baseline"] = {
            "description": "per-tile NeRV decoders (same architecture, He init) trained from scratch on these frames, Adam lr 8e-3, 8 frames/step",
            "num_params": baseline.num_params,
            "points": [{"train_s": p.train_seconds, "steps": p.steps, "psnr_rgb": p.psnr} for p in baseline.points],
            "target_psnr": forward["psnr_rgb"],
            "seconds_to_target": reached.train_seconds if reached else None,
            "speedup_vs_forward_encode": (reached.train_seconds / forward["encode_s"]) if reached else None,
            "speedup_vs_forward_bitstream": (reached.train_seconds / forward["bitstream_s"]) if reached else None,
            "speedup_lower_bound_vs_forward_encode": None if reached else baseline.points[-1].train_seconds / forward["encode_s"],
        }
    report["decode_parallelism"] = decode_parallelism(frames, codec, args.quality)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
