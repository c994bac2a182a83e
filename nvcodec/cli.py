"""The ``nvcodec`` command line: parse, call the API, map errors to exit codes.

Exit codes: 0 ok; 2 bad input or bad stream (one line on stderr); 1 internal error; 130 interrupted.
torch is imported only inside the commands that need it, so ``nvcodec --help`` starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence

from nvcodec.container import CODEC_NAMES  # torch-free

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no summary line")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nvcodec",
        description="Neural video codec: hypernerv (hypernetwork-encoded NeRV) and intra (learned image codec).",
    )
    parser.add_argument("--version", action="version", version="nvcodec 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    enc = sub.add_parser("encode", help="encode a video or image into a .nvc stream")
    enc.add_argument("input", help="a local video (MP4/MOV, Matroska/WebM, AVI, MPEG-TS/PS, Ogg, FLV, Y4M) or image (PNG, JPEG, WebP, BMP, TIFF)")
    enc.add_argument("-o", "--output", required=True, help="output .nvc file")
    enc.add_argument("--codec", choices=CODEC_NAMES, default="intra")
    enc.add_argument("--model", default=None, help="registered model name (default: the codec's shipped model)")
    enc.add_argument("--quality", type=int, default=None, help="rate point, 0..levels-1, higher = better (default: middle)")
    enc.add_argument("--refine-steps", type=int, default=0, help="gradient steps on the coded latent after the forward pass (slow; hypernerv at the default clip stride weighs the clip-edge frames more)")
    enc.add_argument("--clip-stride", type=int, default=None, metavar="S",
                     help="hypernerv: show S frames per chunk, each coded in the clip-length window centred on them (no clip-edge dip; ~clip_len/S x rate; default: clip length)")
    enc.add_argument("--frames", default=None, metavar="A:B", help="encode only frames A..B-1 (B past the end: clamped, with a warning)")
    enc.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    enc.add_argument("--force", action="store_true", help="overwrite an existing output")
    _add_common(enc)

    dec = sub.add_parser("decode", help="decode a .nvc stream to .mkv (lossless), .y4m, .mp4, .png or a folder of PNGs")
    dec.add_argument("input", help=".nvc stream")
    dec.add_argument("-o", "--output", required=True, help="OUT.mkv (FFV1, lossless), OUT.y4m (16-bit 4:4:4, lossless), OUT.mp4 (H.264), OUT.png (one frame) or a folder")
    dec.add_argument("--frames", default=None, metavar="A:B", help="decode only frames A..B-1 (reads only the chunks that cover them)")
    dec.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    dec.add_argument("--force", action="store_true", help="overwrite an existing output")
    _add_common(dec)

    inf = sub.add_parser("info", help="header, model, sizes, bpp and chunk table of a .nvc stream")
    inf.add_argument("input")
    inf.add_argument("--json", action="store_true", help="machine-readable output")
    inf.add_argument("--verify", action="store_true", help="also read every chunk and check its CRC (exit 2 naming the first damaged one)")

    mod = sub.add_parser("models", help="registered models and their shipped weights")
    mod.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser(
        "train", help="train a codec: nvcodec train image|hypernerv --config X.yaml (LightningCLI)", add_help=False
    )

    exp = sub.add_parser("export", help="turn a training checkpoint into a registered weights file")
    exp.add_argument("checkpoint", help="Lightning .ckpt")
    exp.add_argument("-o", "--name", required=True, help="registered model name, e.g. intra-small")
    exp.add_argument("--weights-dir", default=None, help="where to write NAME.safetensors (default: the package's weights folder)")
    exp.add_argument("--force", action="store_true")

    sub.add_parser("bench", help="benchmarks: nvcodec bench rd|speed|scaling|load ...", add_help=False)

    demo = sub.add_parser("demo", help="encode + decode the bundled clip with the shipped default model and report")
    demo.add_argument("--codec", choices=CODEC_NAMES, default="intra")
    demo.add_argument("--quality", type=int, default=None)
    demo.add_argument("--out", default="demo-out", help="folder for demo.nvc and demo.mkv (default: demo-out)")
    _add_common(demo)
    _add_serve_parsers(sub)
    return parser


def _add_serve_parsers(sub: argparse._SubParsersAction) -> None:
    import dataclasses

    from nvcodec.serve.config import ServeConfig  # stdlib only: keeps --help light

    default = {f.name: f.default for f in dataclasses.fields(ServeConfig)}
    srv = sub.add_parser("serve", help="the HTTP representation service: upload videos, fetch any frame or range")
    srv.add_argument("--data", required=True, metavar="DIR", help="folder for the catalogue, uploads and streams (created if missing)")
    srv.add_argument("--host", default=default["host"], help=f"address to bind (default: {default['host']}, loopback only)")
    srv.add_argument("--port", type=int, default=default["port"], help=f"(default: {default['port']})")
    srv.add_argument("--workers", type=int, default=default["workers"], help=f"encode worker processes (default: {default['workers']})")
    srv.add_argument("--queue", type=int, default=default["queue_limit"], help=f"encodes that may wait beyond the running ones; more get 503 (default: {default['queue_limit']})")
    srv.add_argument("--max-upload-mb", type=float, default=default["max_upload_bytes"] / 2**20, help="larger uploads get 413 (default: %(default)g)")
    srv.add_argument("--max-pixels", type=int, default=default["max_pixels"], help="per frame, width x height (default: %(default)d)")
    srv.add_argument("--max-frames", type=int, default=default["max_frames"], help="per video, after frames=A:B (default: %(default)d)")
    srv.add_argument("--cache-mb", type=float, default=default["cache_bytes"] / 2**20, help="memory for decoded chunks (default: %(default)g)")
    srv.add_argument("--decode-threads", type=int, default=default["decode_threads"], help="frame decodes at once (default: %(default)d)")
    srv.add_argument("--models", default="", metavar="CODEC=MODEL,...", help="registered models to encode with (default: the shipped ones)")
    srv.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info")

    keys = sub.add_parser("keys", help="API keys of nvcodec serve: add NAME | list | revoke NAME")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    for action, text in (
        ("add", "create a key and print it (only this once: the catalogue stores its hash)"),
        ("list", "the keys: name, created, revoked"),
        ("revoke", "revoke a key at once (running servers included)"),
    ):
        parser = actions.add_parser(action, help=text)
        if action != "list":
            parser.add_argument("name")
        parser.add_argument("--data", required=True, metavar="DIR", help="the folder given to nvcodec serve --data")


@contextlib.contextmanager
def _progress(desc: str, quiet: bool) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """(set_total, advance) callbacks driving a tqdm bar on a TTY; no-ops otherwise."""
    if quiet or not sys.stderr.isatty():
        yield (lambda total: None), (lambda n: None)
        return
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="frame", file=sys.stderr, leave=False, dynamic_ncols=True)

    def set_total(total: int) -> None:
        bar.reset(total=total)

    try:
        yield set_total, bar.update
    finally:
        bar.close()


@contextlib.contextmanager
def _partial_input_noted() -> Iterator[None]:
    """Silence ``PartialInputWarning``s: the command prints its report's one warning line instead."""
    import warnings

    from nvcodec.io import PartialInputWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PartialInputWarning)
        yield


def _warn(message: str | None) -> None:
    """One line on stderr (even with --quiet): the result holds fewer frames than asked for or claimed."""
    if message:
        print(f"nvcodec: warning: {message}", file=sys.stderr)


def _cmd_encode(args: argparse.Namespace) -> int:
    from nvcodec import api

    frames = api.parse_frame_range(args.frames)
    with _progress("encode", args.quiet) as (set_total, advance), _partial_input_noted():
        report = api.encode_file(
            args.input, args.output, codec=args.codec, quality=args.quality, model=args.model,
            refine_steps=args.refine_steps, frames=frames, device=args.device, force=args.force,
            progress=advance, on_loaded=set_total, clip_stride=args.clip_stride,
        )
    _warn(report.warning)
    if not args.quiet:
        print(f"{report.summary()} -> {args.output}")
    return EXIT_OK


def _cmd_decode(args: argparse.Namespace) -> int:
    from nvcodec import api

    frames = api.parse_frame_range(args.frames)
    with _progress("decode", args.quiet) as (set_total, advance), _partial_input_noted():
        report = api.decode_file(
            args.input, args.output, frames, device=args.device, force=args.force, progress=advance, on_loaded=set_total
        )
    _warn(report.warning)
    if not args.quiet:
        print(f"{report.summary()} -> {args.output}")
    return EXIT_OK


def _cmd_info(args: argparse.Namespace) -> int:
    from nvcodec import api

    stream = api.info(args.input, verify=args.verify)
    if args.json:
        print(json.dumps(stream.to_json_dict(), indent=2))
        return EXIT_OK
    print(f"codec      {stream.codec} (model {stream.model}, weights {stream.weights or 'untrained'})")
    print(f"video      {stream.width}x{stream.height}, {stream.frame_count} frame(s) @ {float(stream.fps):.3f} fps ({stream.fps}), {stream.pixel_format}")
    print(f"encoded on {stream.made_on}; params {json.dumps(stream.params, sort_keys=True)}")
    print(f"size       {stream.total_bytes} bytes ({stream.header_bytes} header/framing), {stream.bpp:.4f} bpp")
    if stream.verified:
        print(f"verified   yes: {len(stream.chunks)} chunk CRC(s) match; the chunks cover frames 0:{stream.frame_count}, each once")
    else:
        print("verified   no (use --verify to check every chunk's CRC)")
    print(f"chunks     {len(stream.chunks)}")
    for chunk in stream.chunks:
        print(f"  #{chunk.index:<4d} frames {chunk.frame_start}:{chunk.frame_stop}  {chunk.bytes} bytes")
    return EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    from nvcodec import registry

    rows = [
        {
            "name": spec.name,
            "codec": spec.codec,
            "quality_levels": spec.quality_levels,
            "weights": spec.weights_file,
            "weights_present": spec.has_weights,
            "default": registry.DEFAULT_MODELS.get(spec.codec) == spec.name,
            "description": spec.description,
        }
        for spec in registry.list_models()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for row in rows:
        weights = row["weights"] if row["weights_present"] else ("missing" if row["weights"] else "none (untrained)")
        mark = "*" if row["default"] else " "
        print(f"{mark} {row['name']:<16} {row['codec']:<10} q0..{row['quality_levels'] - 1}  weights: {weights:<28} {row['description']}")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from nvcodec.train.export import export_checkpoint

    path, digest = export_checkpoint(args.checkpoint, args.name, weights_dir=args.weights_dir, force=args.force)
    print(f"exported {args.name} -> {path} (sha256 {digest[:16]}…)")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nvcodec import api, io, metrics

    clip = Path(__file__).parent / "media" / "demo.mp4"
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    stream_path, video_path = out / "demo.nvc", out / "demo.mkv"
    with _progress("encode", args.quiet) as (set_total, advance):
        enc = api.encode_file(clip, stream_path, codec=args.codec, quality=args.quality, force=True, progress=advance, on_loaded=set_total)
    with _progress("decode", args.quiet) as (set_total, advance):
        dec = api.decode_file(stream_path, video_path, force=True, progress=advance, on_loaded=set_total)
    original = io.read_video(clip).frames
    decoded = io.read_video(video_path).frames
    stream = api.info(stream_path)
    print(f"demo clip  {clip.name}: {enc.frames} frames {enc.width}x{enc.height} (see nvcodec/media/README.md)")
    print(f"model      {stream.model} ({stream.codec}), quality {stream.params.get('quality')}")
    print(f"stream     {stream_path}: {enc.bytes} bytes, {enc.bpp:.4f} bpp")
    print(f"quality    PSNR-RGB {metrics.psnr_rgb(original, decoded):.2f} dB, PSNR-Y {metrics.psnr_y(original, decoded):.2f} dB, MS-SSIM {metrics.ms_ssim(original, decoded):.4f}")
    print(f"speed      encode {enc.fps:.2f} fps, decode {dec.fps:.2f} fps (CPU, {os.cpu_count()} cores)")
    print(f"decoded    {video_path} (lossless FFV1; plays in ffplay/VLC/mpv)")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nvcodec.serve.app import run
    from nvcodec.serve.config import ServeConfig, parse_models

    config = ServeConfig(
        data=Path(args.data), host=args.host, port=args.port, workers=args.workers, queue_limit=args.queue,
        max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels, max_frames=args.max_frames,
        cache_bytes=int(args.cache_mb * 2**20), decode_threads=args.decode_threads, models=parse_models(args.models),
    )
    run(config, log_level=args.log_level)
    return EXIT_OK


def _cmd_keys(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from nvcodec.serve.catalogue import Catalogue
    from nvcodec.serve.config import DataLayout

    layout = DataLayout(Path(args.data))
    if args.keys_command == "add":
        layout.create()
        key = Catalogue(layout.catalogue).add_key(args.name)
        print(key)  # alone on stdout: KEY=$(nvcodec keys add NAME --data DIR)
        print(f"added key {args.name!r}; it is shown only this once (the catalogue keeps its sha256)", file=sys.stderr)
        return EXIT_OK
    catalogue = Catalogue(layout.catalogue, create=False)
    if args.keys_command == "revoke":
        catalogue.revoke_key(args.name)
        print(f"revoked key {args.name!r}")
        return EXIT_OK

    def when(seconds: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))

    records = catalogue.list_keys()
    if not records:
        print(f"no keys in {args.data} (add one with: nvcodec keys add NAME --data {args.data})", file=sys.stderr)
    for record in records:
        state = f"revoked {when(record.revoked_at)}" if record.revoked else "active"
        print(f"{record.name:<24} created {when(record.created_at)}  {state}")
    return EXIT_OK


_COMMANDS = {
    "encode": _cmd_encode,
    "decode": _cmd_decode,
    "info": _cmd_info,
    "models": _cmd_models,
    "export": _cmd_export,
    "demo": _cmd_demo,
    "serve": _cmd_serve,
    "keys": _cmd_keys,
}


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwind like Ctrl-C, so that temporary outputs are removed


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # run as the program (not called from Python): SIGTERM cleans up like SIGINT
        import signal

        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    argv = list(sys.argv[1:] if argv is None else argv)
    from nvcodec.errors import NvcodecError

    if not os.environ.get("NVCODEC_DEBUG"):
        import warnings

        # compressai imports torch_geometric, whose torch.jit.script calls warn at import time:
        # a second stderr line would break the "one line on stderr" contract of exit code 2.
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch")

    try:
        # `train` and `bench` hand their arguments to their own parsers (LightningCLI, bench's).
        if argv and argv[0] == "train":
            from nvcodec.train.cli import main as train_main

            return train_main(argv[1:])
        if argv and argv[0] == "bench":
            from nvcodec.bench.cli import main as bench_main

            return bench_main(argv[1:])
        parser = _build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_BAD_INPUT
        return _COMMANDS[args.command](args)
    except NvcodecError as exc:
        print(f"nvcodec: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("nvcodec: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if os.environ.get("NVCODEC_DEBUG"):
            raise
        print(f"nvcodec: internal error: {type(exc).__name__}: {exc} (set NVCODEC_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
