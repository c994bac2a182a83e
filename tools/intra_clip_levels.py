"""Every intra quality level on short video clips: whole-stream bytes and PSNR-RGB (issue #14, acceptance 2).

    OMP_NUM_THREADS=1 python tools/intra_clip_levels.py --json bench/results/intra-clip-levels.json

Each input (``PATH,SCALE,WxH[,START]`` as the hypernerv benchmarks read it: integer box downscale, centre
crop) is cut to its first ``--frames`` frames and coded through the public API (``nvcodec.encode`` /
``nvcodec.decode``) at every level of the model. bpp counts every byte of the ``.nvc`` stream. Exit status
1 if, on any clip, the default level is worse (lower PSNR) than the level below it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nvcodec
from nvcodec.bench.hypernerv_seams import load
from nvcodec.metrics import bpp as bits_per_pixel
from nvcodec.metrics import psnr_rgb
from nvcodec.registry import load_codec

__all__ = ["main"]

DEFAULT_INPUTS = ("../shared/media/carphone_pristine.mp4,1,", "../shared/media/bigbuckbunny.mp4,2,640x272")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="intra-small")
    parser.add_argument("--input", action="append", help=f"PATH,SCALE,WxH[,START] (repeatable; default: {', '.join(DEFAULT_INPUTS)})")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)

    codec = load_codec(args.model)
    levels, default = codec.quality_levels, codec.default_quality
    result: dict[str, object] = {"model": args.model, "frames": args.frames, "clips": {}}
    failed = False
    for spec in args.input or DEFAULT_INPUTS:
        name, frames = load(spec, args.frames)
        count, height, width, _ = frames.shape
        rows = []
        for quality in range(levels):
            stream = nvcodec.encode(frames, codec="intra", quality=quality, model=args.model)
            psnr = psnr_rgb(frames, nvcodec.decode(stream))
            bpp = bits_per_pixel(len(stream), count, height, width)
            rows.append({"quality": quality, "bytes": len(stream), "bpp": bpp, "psnr_rgb": psnr})
            print(f"{name}  quality {quality}{' (default)' if quality == default else ''}  {len(stream):8d} B  {bpp:.3f} bpp  {psnr:.2f} dB", flush=True)
        if default > 0 and rows[default]["psnr_rgb"] < rows[default - 1]["psnr_rgb"]:
            print(f"{name}: the default level {default} is worse than level {default - 1}", file=sys.stderr)
            failed = True
        result["clips"][name] = rows
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
