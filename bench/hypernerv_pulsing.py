"""hypernerv clip pulsing: mean PSNR by position in the clip, per clip stride, with the rate it costs.

A clip's quality dips at its first and last frames; with one clip per chunk (stride = clip_len =
8) that dip repeats every 8 frames. ``clip_stride`` S < 8 codes overlapping 8-frame windows and
shows only their middle S frames (see ``hypernerv/video.py``). For each input (first ``--frames``
frames) and each stride: real ``.nvc`` bytes, PSNR-RGB, per-frame PSNR, and the mean PSNR by
position ``f mod 8`` (the default's clip grid) and ``f mod S`` (the position in the chunk), with
the span (max - min) of each, and the encode's wall seconds. ``--refine-steps K`` encodes with K code-refinement steps (slow), whose
distortion weighs the clip-edge frames ``--refine-edge-weight`` times at stride 8 (default: the codec's;
strides below 8 refine unweighted); weight 1 shows how much of the dip refinement alone removes.

    OMP_NUM_THREADS=1 python -m nvcodec.bench.hypernerv_pulsing bench/results/hypernerv-pulsing.json
"""

from __future__ import annotations

import json
import time

import numpy as np

from nvcodec import metrics
from nvcodec.bench.hypernerv_seams import common_parser, load, start_report, stream_bytes
from nvcodec.hypernerv.video import HyperNervVideoCodec

DEFAULT_INPUTS = ("../shared/media/carphone_pristine.mp4,1,", "nvcodec/media/demo.mp4,1,", "../shared/media/bigbuckbunny.mp4,2,640x272")


def by_position(values: list[float], period: int) -> list[float]:
    """Mean of ``values[f]`` over the frames f with the same ``f mod period``."""
    return [float(np.mean(values[p::period])) for p in range(min(period, len(values)))]


def refine_edge_weight(codec: HyperNervVideoCodec, refine_steps: int) -> float | None:
    """The clip-edge weight the codec's refinement actually used (None: no refinement; 1: unweighted)."""
    if not refine_steps:
        return None
    weights = codec.refine_weights()
    return 1.0 if weights is None else float(weights[0])


def measure(codec: HyperNervVideoCodec, frames: np.ndarray, quality: int, refine_steps: int = 0) -> dict:
    count, height, width = frames.shape[:3]
    start = time.perf_counter()
    encoded = codec.encode(frames, quality, refine_steps=refine_steps)
    encode_s = time.perf_counter() - start
    size = stream_bytes(codec, encoded, height, width)
    decoded = encoded.reconstruction
    per_frame = [metrics.psnr_rgb(frames[i : i + 1], decoded[i : i + 1]) for i in range(count)]
    clip_len = codec.model.config.clip_len
    in_clip, in_chunk = by_position(per_frame, clip_len), by_position(per_frame, codec.stride)
    return {
        "clip_stride": codec.stride,
        "refine_steps": refine_steps,
        "refine_edge_weight": refine_edge_weight(codec, refine_steps),
        "chunks": len(encoded.chunks),
        "bytes": size,
        "bpp": metrics.bpp(size, count, height, width),
        "psnr_rgb": metrics.psnr_rgb(frames, decoded),
        "encode_s": encode_s,
        "psnr_per_frame": per_frame,
        "psnr_by_clip_position": in_clip,
        "span_by_clip_position_db": max(in_clip) - min(in_clip),
        "psnr_by_chunk_position": in_chunk,
        "span_by_chunk_position_db": max(in_chunk) - min(in_chunk),
    }


def main(argv: list[str] | None = None) -> int:
    parser = common_parser(__doc__, "carphone 176x144, demo 320x180, bbb 640x272", 24)
    parser.add_argument("--strides", default="8,6,4")
    parser.add_argument("--refine-steps", type=int, default=0,
                        help="encode-time code refinement steps (slow)")
    parser.add_argument("--refine-edge-weight", type=float, default=None,
                        help="the refinement's distortion weight of the clip-edge frames (default: the codec's, hypernerv.model.REFINE_EDGE_WEIGHT)")
    args = parser.parse_args(argv)
    if args.refine_edge_weight is not None and args.refine_edge_weight < 1.0:
        parser.error(f"--refine-edge-weight {args.refine_edge_weight:g} is below 1")
    base, report = start_report("hypernerv_pulsing", argv, args.model, args.quality, args.checkpoint)
    for item in args.input or DEFAULT_INPUTS:
        name, frames = load(item, args.frames)
        rows = []
        for stride in (int(s) for s in args.strides.split(",") if s):
            codec = HyperNervVideoCodec(base.model, args.model, clip_stride=stride)
            if args.refine_edge_weight is not None:
                codec.refine_edge_weight = args.refine_edge_weight
            row = measure(codec, frames, args.quality, args.refine_steps)
            rows.append(row)
            print(f"{name:28s} stride {stride} refine {args.refine_steps} (edge weight {row['refine_edge_weight']})  {row['bytes']:7d} B {row['bpp']:.4f} bpp  PSNR {row['psnr_rgb']:.2f}  "
                  f"span by clip position {row['span_by_clip_position_db']:.2f} dB, by chunk position {row['span_by_chunk_position_db']:.2f} dB, encode {row['encode_s']:.1f} s  "
                  f"[{' '.join(f'{v:.1f}' for v in row['psnr_by_clip_position'])}]", flush=True)
        report["inputs"].append({"name": name, "spec": item, "frames": int(frames.shape[0]), "rows": rows})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
