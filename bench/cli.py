"""``nvcodec bench rd|speed|scaling|load``: argument parsing for the benchmarks (``nvcodec.cli`` forwards here).

Errors caused by the input raise ``NvcodecError`` subclasses; ``nvcodec.cli.main`` maps them to exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from nvcodec.errors import InputError

__all__ = ["main"]

EXIT_OK = 0


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _csv(text))
    except ValueError:
        raise InputError(f"expected comma-separated integers, got {text!r}") from None


def _param_plural(codec: str) -> str:
    from nvcodec.bench import classical

    return "crfs" if classical.CODECS[codec].param_name == "crf" else "qualities"


def _param_flag(codec: str) -> str:
    """``--x264-crfs``, ``--jpeg-qualities``, ...: one option per classical codec."""
    return f"--{codec}-{_param_plural(codec)}"


def _log(quiet: bool):
    def log(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    return log


def _check_out(out: Path, names: Sequence[str], force: bool) -> None:
    existing = [name for name in names if (out / name).exists()]
    if existing and not force:
        raise InputError(f"{out} already holds {', '.join(existing)}; pass --force to overwrite")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")


def _build_parser() -> argparse.ArgumentParser:
    from nvcodec.bench import classical
    from nvcodec.bench.rd import ALL_CODECS

    parser = argparse.ArgumentParser(prog="nvcodec bench", description="RD, speed, scaling and loading benchmarks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    rd = sub.add_parser(
        "rd", help="rate-distortion benchmark against x264/x265/SVT-AV1/JPEG/WebP",
        description="For every input and codec point: bpp from real bytes, PSNR-RGB, PSNR-Y, MS-SSIM, "
        "encode/decode fps; BD-rate vs x265 medium (videos) or JPEG (images). "
        "Writes results.json, results.csv and rd.png into --out.",
    )
    rd.add_argument("inputs", nargs="+", metavar="INPUT", help="videos PyAV reads, or PNG/JPEG images")
    rd.add_argument("--codecs", default=",".join(ALL_CODECS), help=f"comma-separated subset of {','.join(ALL_CODECS)} (default: all)")
    rd.add_argument("--frames", type=int, default=None, metavar="N", help="first N frames of each video (default: all)")
    rd.add_argument("--crop", default=None, metavar="WxH", help="centre crop before coding")
    rd.add_argument("--models", default="", help="nvcodec model names to use instead of the shipped defaults, e.g. intra-tiny,hypernerv-tiny")
    for name, spec in classical.CODECS.items():
        rd.add_argument(
            _param_flag(name), default=None, metavar="LIST",
            help=f"{name} {_param_plural(name)} (default: {','.join(map(str, spec.default_params))})",
        )
    rd.add_argument("--crfs", default=None, metavar="LIST", help="shorthand: CRFs for both x264 and x265")
    rd.add_argument("--anchor-video", default="x265", help="BD-rate anchor for video inputs (default: x265)")
    rd.add_argument("--anchor-image", default="jpeg", help="BD-rate anchor for image inputs (default: jpeg)")
    rd.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device of the nvcodec codecs")
    rd.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM (recorded as null): a quicker rate/PSNR run")
    rd.add_argument("--out", default="bench-out/rd", help="output folder (default: bench-out/rd)")
    rd.add_argument("--force", action="store_true", help="overwrite results already in --out")
    rd.add_argument("--quiet", "-q", action="store_true", help="no per-point progress lines")

    speed = sub.add_parser(
        "speed", help="pytest-benchmark suites: encode, decode, entropy coding, transforms",
        description="Runs pytest on nvcodec/bench/speed with --benchmark-json OUT/speed.json. "
        "Arguments after -- go to pytest (e.g. -- -k intra).",
    )
    speed.add_argument("--out", default="bench-out/speed", help="output folder for speed.json")
    speed.add_argument("--size", default="256x256", metavar="WxH", help="frame size of the synthetic clip")
    speed.add_argument("--frames", type=int, default=8, help="frames of the synthetic clip")
    speed.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    speed.add_argument("--rounds", type=int, default=3, help="timed rounds per benchmark (after one warm-up round)")
    speed.add_argument("--models", default="", help="nvcodec model names (default: shipped, else the tiny config)")
    speed.add_argument("--force", action="store_true")
    speed.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments (after --)")

    scaling = sub.add_parser(
        "scaling", help="wall time and peak RSS vs frame count and resolution (one subprocess per point)",
        description="Encode and decode synthetic clips in a fresh subprocess per point; fits log-log slopes. "
        "Writes scaling.json and scaling.png into --out.",
    )
    scaling.add_argument("--codecs", default="intra,hypernerv,x264,x265", help="comma-separated codecs")
    scaling.add_argument("--models", default="", help="nvcodec model names (default: shipped, else the tiny config)")
    scaling.add_argument("--frame-counts", default="8,16,32,64,128", help="frame counts at --base-size")
    scaling.add_argument("--sizes", default="128x128,256x256,512x512,1280x720", help="sizes at --base-frames")
    scaling.add_argument("--base-size", default="256x256", metavar="WxH")
    scaling.add_argument("--base-frames", type=int, default=16)
    scaling.add_argument("--quality", type=int, default=None, help="nvcodec quality level (default: middle); classical codecs use CRF 28 / quality 70")
    scaling.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    scaling.add_argument("--timeout", type=float, default=600.0, help="seconds per point before it is recorded as failed")
    scaling.add_argument("--out", default="bench-out/scaling")
    scaling.add_argument("--force", action="store_true")
    scaling.add_argument("--quiet", "-q", action="store_true")
    load = sub.add_parser(
        "load", help="clips/s of random clips as tensors: .nvc (hypernerv, intra) vs PyAV on H.264 vs .npy in RAM",
        description="Encodes the first --frames frames of INPUT with hypernerv and intra and as H.264, then times "
        "delivering the same random clips as (T, 3, H, W) uint8 tensors from each. Writes load.json into --out.",
    )
    load.add_argument("input", metavar="INPUT", help="a video PyAV reads")
    load.add_argument("--frames", type=int, default=24, metavar="N", help="first N frames (default: 24)")
    load.add_argument("--crop", default=None, metavar="WxH", help="centre crop before coding")
    load.add_argument("--clips", type=int, default=64, help="random clips per loader (default: 64)")
    load.add_argument("--clip-len", type=int, default=8, help="frames per clip (default: 8)")
    load.add_argument("--batch", type=int, default=8, help="clips per grouped decode of hypernerv-batch (default: 8)")
    load.add_argument("--loaders", default="hypernerv,hypernerv-batch,intra,pyav,npy", help="comma-separated subset")
    load.add_argument("--quality", type=int, default=None, help="nvcodec quality level (default: middle)")
    load.add_argument("--seed", type=int, default=0)
    load.add_argument("--out", default="bench-out/load", help="output folder (default: bench-out/load)")
    load.add_argument("--force", action="store_true", help="overwrite results already in --out")
    load.add_argument("--quiet", "-q", action="store_true")
    _add_serve_parser(sub)
    return parser


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve", help="frames/s and p50/p99 latency of random frame GETs from nvcodec serve vs PyAV seeking in H.264",
        description="Starts nvcodec serve, uploads the first --frames frames of INPUT as an intra and a hypernerv "
        "video, then times random single-frame GETs at each --clients level, without (cold) and with (warm) the chunk "
        "cache; the baseline seeks and decodes an H.264 MP4 of the same frames with PyAV per request. Writes serve.json.",
    )
    serve.add_argument("input", nargs="?", default=None, metavar="INPUT", help="a video (default: the bundled demo clip)")
    serve.add_argument("--frames", type=int, default=24, metavar="N", help="first N frames (default: 24)")
    serve.add_argument("--clients", default="1,4,16", help="concurrent clients per level (default: 1,4,16)")
    serve.add_argument("--requests", type=int, default=96, help="random frame requests per level (default: 96)")
    serve.add_argument("--format", default="png", choices=("png", "jpeg", "npy"), help="reply format (default: png)")
    serve.add_argument("--quality", type=int, default=None, help="nvcodec quality level (default: middle)")
    serve.add_argument("--decode-threads", type=int, default=2, help="the server's --decode-threads (default: 2)")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--out", default="bench-out/serve", help="output folder (default: bench-out/serve)")
    serve.add_argument("--force", action="store_true", help="overwrite results already in --out")
    serve.add_argument("--quiet", "-q", action="store_true")


def _cmd_load(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from nvcodec.bench import load
    from nvcodec.bench.rd import parse_size

    out = Path(args.out)
    _check_out(out, load.RESULT_FILES, args.force)
    options = load.LoadOptions(
        loaders=load.parse_loaders(args.loaders), frames=args.frames, crop=parse_size(args.crop) if args.crop else None,
        clips=args.clips, clip_len=args.clip_len, batch=args.batch, seed=args.seed, quality=args.quality,
    )
    report = load.run_load(args.input, options, log=_log(args.quiet))
    report["command"] = " ".join(["nvcodec", "bench", *argv])
    paths = load.write_json(report, out)
    print(load.format_table(report), end="")
    print("wrote " + ", ".join(str(p) for p in paths))
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from nvcodec.bench import serve

    out = Path(args.out)
    _check_out(out, serve.RESULT_FILES, args.force)
    options = serve.ServeBenchOptions(
        input=Path(args.input) if args.input else serve.DEFAULT_INPUT, frames=args.frames, clients=_ints(args.clients),
        requests=args.requests, image_format=args.format, quality=args.quality, decode_threads=args.decode_threads,
        seed=args.seed,
    )
    report = serve.run_serve_bench(options, log=_log(args.quiet), command=" ".join(["nvcodec", "bench", *argv]))
    path = serve.write_json(report, out)
    print(serve.format_table(report), end="")
    print(f"wrote {path}")
    return EXIT_OK


def _cmd_rd(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from nvcodec.bench import classical, rd

    out = Path(args.out)
    _check_out(out, rd.RESULT_FILES, args.force)
    params: dict[str, tuple[int, ...]] = {}
    if args.crfs:
        params["x264"] = params["x265"] = _ints(args.crfs)
    for name in classical.CODECS:
        value = getattr(args, _param_flag(name)[2:].replace("-", "_"))
        if value:
            params[name] = _ints(value)
    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames {args.frames}: need at least 1")
    options = rd.RDOptions(
        codecs=tuple(_csv(args.codecs)),
        frames=args.frames,
        crop=rd.parse_size(args.crop) if args.crop else None,
        models=tuple(_csv(args.models)),
        params=tuple(params.items()),
        anchor_video=args.anchor_video,
        anchor_image=args.anchor_image,
        device=args.device,
        ms_ssim=not args.no_ms_ssim,
    )
    results = rd.run_rd(args.inputs, options, log=_log(args.quiet), command=" ".join(["nvcodec", "bench", *argv]))
    paths = rd.write_outputs(results, out)
    print(rd.format_table(results), end="")
    print("wrote " + ", ".join(str(p) for p in paths))
    return EXIT_OK


def _cmd_speed(args: argparse.Namespace) -> int:
    from nvcodec.bench.rd import parse_size
    from nvcodec.bench.speed_runner import run_speed

    out = Path(args.out)
    _check_out(out, ("speed.json",), args.force)
    extra = [a for a in args.pytest_args if a != "--"]
    parse_size(args.size)  # fail early on a bad size
    return run_speed(out, args.size, args.frames, args.device, extra, rounds=args.rounds, models=_csv(args.models))


def _cmd_scaling(args: argparse.Namespace) -> int:
    from nvcodec.bench import scaling
    from nvcodec.bench.rd import parse_size

    out = Path(args.out)
    _check_out(out, scaling.RESULT_FILES, args.force)
    grid = scaling.ScalingGrid(
        codecs=tuple(_csv(args.codecs)),
        frame_counts=_ints(args.frame_counts),
        sizes=tuple(parse_size(s) for s in _csv(args.sizes)),
        base_size=parse_size(args.base_size),
        base_frames=args.base_frames,
        quality=args.quality,
        device=args.device,
        timeout_s=args.timeout,
    )
    report = scaling.run_scaling(grid, _csv(args.models), log=_log(args.quiet))
    paths = scaling.write_outputs(report, out)
    print(scaling.format_table(report), end="")
    print("wrote " + ", ".join(str(p) for p in paths))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nvcodec bench``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _build_parser().parse_args(argv)
    if args.command == "rd":
        return _cmd_rd(args, argv)
    if args.command == "speed":
        return _cmd_speed(args)
    if args.command == "load":
        return _cmd_load(args, argv)
    if args.command == "serve":
        return _cmd_serve(args, argv)
    return _cmd_scaling(args)
