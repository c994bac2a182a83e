"""hypernerv quality levels: real bytes and PSNR-RGB of every level on each input (issue #15, acceptance 3).

The ladder rule asks each level to be >= 0.5 dB above the one below on the validation clip
(Megamind, which no hypernerv training run saw). Per input and level: whole-stream bytes, bpp,
PSNR-RGB (mean of per-frame PSNR), and the PSNR step from the level below.

    OMP_NUM_THREADS=1 python -m nvcodec.bench.hypernerv_levels bench/results/hypernerv-levels.json

``--clip-stride S`` measures the ladder of ``HyperNervVideoCodec(clip_stride=S)`` (overlapping clips; see
``hypernerv_pulsing``), so that strides can be compared as whole rate-distortion curves.
"""

from __future__ import annotations

import json

from nvcodec import metrics
from nvcodec.bench.hypernerv_seams import common_parser, load, start_report, stream_bytes
from nvcodec.hypernerv.video import HyperNervVideoCodec

DEFAULT_INPUTS = ("../shared/media/train/opencv_Megamind.avi,1,,1", "../shared/media/carphone_pristine.mp4,1,", "../shared/media/bigbuckbunny.mp4,2,640x272")


def main(argv: list[str] | None = None) -> int:
    parser = common_parser(__doc__, "Megamind 720x528 from frame 1 (validation), carphone 176x144, bbb 640x272", 24)
    parser.add_argument("--clip-stride", type=int, default=None, help="frames shown per chunk (default: the clip length)")
    args = parser.parse_args(argv)
    codec, report = start_report("hypernerv_levels", argv, args.model, args.quality, args.checkpoint)
    report.pop("quality")
    if args.clip_stride is not None:
        codec = HyperNervVideoCodec(codec.model, args.model, clip_stride=args.clip_stride)
    report["clip_stride"] = codec.stride
    levels = codec.model.config.quality_levels
    for item in args.input or DEFAULT_INPUTS:
        name, frames = load(item, args.frames)
        count, height, width = frames.shape[:3]
        rows = []
        for quality in range(levels):
            encoded = codec.encode(frames, quality)
            size = stream_bytes(codec, encoded, height, width)
            psnr = metrics.psnr_rgb(frames, encoded.reconstruction)
            step = None if not rows else psnr - rows[-1]["psnr_rgb"]
            rows.append({"quality": quality, "bytes": size, "bpp": metrics.bpp(size, count, height, width), "psnr_rgb": psnr, "step_db": step})
            print(f"{name:36s} q{quality}  {size:7d} B {rows[-1]['bpp']:.4f} bpp  PSNR {psnr:.2f}"
                  + ("" if step is None else f"  (+{step:.2f} dB)"), flush=True)
        report["inputs"].append({"name": name, "spec": item, "frames": int(count), "height": int(height), "width": int(width), "rows": rows})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
