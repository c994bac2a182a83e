"""The RD benchmark: every input x every codec point -> rate, PSNR-RGB/Y, MS-SSIM, speed, BD-rates.

``run_rd`` reads each input with ``nvcodec.io`` (first ``frames`` frames, optional centre crop),
codes it with

- the nvcodec codecs (``intra``, ``hypernerv``) through ``nvcodec.encode`` / ``nvcodec.decode`` at
  every quality level of the chosen model; rate = the whole ``.nvc`` file;
- the classical anchors of ``nvcodec.bench.classical`` (x264, x265, SVT-AV1 at several CRFs; JPEG
  and WebP at several qualities, frame by frame for video inputs; an image is a one-frame video,
  so x265 on an image is x265 intra),

measures quality with ``nvcodec.metrics`` and computes the BD-rate of every codec against the
anchor: x265 medium for video inputs, JPEG for images. ``write_outputs`` writes ``results.json``,
``results.csv`` and ``rd.png``; ``format_table`` is the table the CLI prints.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import numpy as np

from nvcodec import io, metrics
from nvcodec.bench import classical
from nvcodec.bench.bdrate import bd_rate
from nvcodec.bench.models import NVCODEC_CODECS
from nvcodec.bench.results import (
    SCHEMA_VERSION,
    BDRateEntry,
    CodecInfo,
    InputInfo,
    MachineInfo,
    RDPoint,
    RDResults,
    ms_ssim_db,
    write_csv,
    write_json,
)
from nvcodec.errors import InputError

__all__ = [
    "NVCODEC_CODECS",
    "ALL_CODECS",
    "RDOptions",
    "LoadedInput",
    "parse_size",
    "load_input",
    "resolve_models",
    "run_rd",
    "compute_bd_rates",
    "format_table",
    "write_outputs",
]

ALL_CODECS = NVCODEC_CODECS + tuple(classical.CODECS)
LogFn = Callable[[str], None]


@dataclass(frozen=True)
class RDOptions:
    """What to run. ``params`` overrides a classical codec's default CRFs / qualities."""

    codecs: tuple[str, ...] = ALL_CODECS
    frames: int | None = None  # first N frames of a video (None: all)
    crop: tuple[int, int] | None = None  # (W, H) centre crop
    models: tuple[str, ...] = ()  # model names overriding the codecs' default models (one per codec)
    params: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (classical codec, CRFs or qualities)
    anchor_video: str = "x265"
    anchor_image: str = "jpeg"
    device: str = "cpu"
    ms_ssim: bool = True  # False: skip MS-SSIM (recorded as NaN), for quick rate/PSNR checks

    def params_for(self, codec: str) -> tuple[int, ...]:
        return dict(self.params).get(codec, classical.CODECS[codec].default_params)


@dataclass(frozen=True)
class LoadedInput:
    info: InputInfo
    frames: np.ndarray  # (T, H, W, 3) uint8, after --frames and --crop
    fps: Fraction


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> (W, H), both positive."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"bad size {text!r}; expected WxH, e.g. 512x512") from None
    if width < 1 or height < 1:
        raise InputError(f"bad size {text!r}; both sides must be >= 1")
    return width, height


def _centre_crop(frames: np.ndarray, crop: tuple[int, int], path: Path) -> np.ndarray:
    width, height = crop
    src_h, src_w = frames.shape[1:3]
    if width > src_w or height > src_h:
        raise InputError(f"--crop {width}x{height} is larger than {path.name} ({src_w}x{src_h})")
    top, left = (src_h - height) // 2, (src_w - width) // 2
    return np.ascontiguousarray(frames[:, top : top + height, left : left + width])


def load_input(path: str | os.PathLike, frames: int | None, crop: tuple[int, int] | None, name: str) -> LoadedInput:
    """Read ``path`` (video: its first ``frames`` frames; image: one frame) and centre-crop it."""
    path = Path(path)
    probe = io.probe(path)
    video = io.read_video(path, 0, None if probe.is_image else frames)
    coded = video.frames if crop is None else _centre_crop(video.frames, crop, path)
    info = InputInfo(
        name=name,
        path=str(path),
        kind="image" if probe.is_image else "video",
        source_width=video.width,
        source_height=video.height,
        frames=int(coded.shape[0]),
        width=int(coded.shape[2]),
        height=int(coded.shape[1]),
        crop=None if crop is None else f"{crop[0]}x{crop[1]}",
    )
    return LoadedInput(info, coded, video.fps)


def _unique_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """File stems; where two inputs share a stem, their file names (then trailing "+" marks) instead."""
    stems = [Path(p).stem for p in paths]
    names = []
    for path, stem in zip(paths, stems):
        name = stem if stems.count(stem) == 1 else Path(path).name
        while name in names:
            name += "+"
        names.append(name)
    return names


def resolve_models(codecs: Sequence[str], overrides: Sequence[str], log: LogFn) -> dict[str, str]:
    """codec -> model name for the nvcodec codecs in ``codecs``.

    ``overrides`` are model names (``--models intra-tiny,...``); each names its codec. Without one,
    a codec uses its registered default; a default whose shipped weights are missing is skipped
    with a message rather than failing the whole run.
    """
    from nvcodec import registry

    chosen: dict[str, str] = {}
    for name in overrides:
        spec = registry.get_spec(name)
        if spec.codec in chosen:
            raise InputError(f"--models names two {spec.codec} models ({chosen[spec.codec]}, {name}); give one per codec")
        if spec.weights_file and not spec.has_weights:
            raise InputError(f"model {name!r} has no weights file ({spec.weights_path})")
        chosen[spec.codec] = name
    resolved: dict[str, str] = {}
    for codec in codecs:
        if codec not in NVCODEC_CODECS:
            continue
        if codec in chosen:
            resolved[codec] = chosen[codec]
            continue
        spec = registry.get_spec(registry.default_model(codec))
        if spec.weights_file and not spec.has_weights:
            log(f"skipping {codec}: shipped weights {spec.weights_file} missing (use --models {codec}-tiny to test the path)")
            continue
        resolved[codec] = spec.name
    return resolved


def _codec_info(codec: str, model: str | None) -> CodecInfo:
    if codec in NVCODEC_CODECS:
        from nvcodec import registry

        spec = registry.get_spec(model or registry.default_model(codec))
        trained = "shipped weights" if spec.has_weights else "untrained"
        return CodecInfo(codec, "nvcodec", spec.name, f"{spec.name} ({trained}), quality 0..{spec.quality_levels - 1}", "nvc file")
    spec = classical.CODECS[codec]
    return CodecInfo(
        codec, "pyav" if spec.kind == "video" else "pillow", spec.library, spec.description,
        "elementary stream" if spec.kind == "video" else "image file",
    )


def _point(
    source: LoadedInput, codec: str, model: str, param_name: str, param: int, num_bytes: int,
    decoded: np.ndarray, encode_seconds: float, decode_seconds: float, with_ms_ssim: bool,
) -> RDPoint:
    reference = source.frames
    if decoded.shape != reference.shape:
        raise InputError(f"{codec} {param_name}={param} decoded {decoded.shape}, expected {reference.shape}")
    score = metrics.ms_ssim(reference, decoded) if with_ms_ssim else math.nan
    n, h, w = reference.shape[:3]
    return RDPoint(
        input=source.info.name,
        codec=codec,
        model=model,
        param_name=param_name,  # type: ignore[arg-type]
        param=int(param),
        frames=n,
        width=w,
        height=h,
        bytes=int(num_bytes),
        bpp=metrics.bpp(num_bytes, n, h, w),
        psnr_rgb=metrics.psnr_rgb(reference, decoded),
        psnr_y=metrics.psnr_y(reference, decoded),
        ms_ssim=score,
        ms_ssim_db=ms_ssim_db(score) if with_ms_ssim else math.nan,
        encode_seconds=encode_seconds,
        decode_seconds=decode_seconds,
        encode_fps=n / encode_seconds if encode_seconds > 0 else math.inf,
        decode_fps=n / decode_seconds if decode_seconds > 0 else math.inf,
    )


def _classical_points(source: LoadedInput, codec: str, params: Sequence[int], with_ms_ssim: bool) -> list[RDPoint]:
    spec = classical.CODECS[codec]
    points = []
    for param in params:
        started = time.perf_counter()
        stream = classical.encode(source.frames, codec, param, source.fps)
        encoded = time.perf_counter()
        decoded = classical.decode(stream)
        finished = time.perf_counter()
        points.append(
            _point(source, codec, spec.library, spec.param_name, param, stream.num_bytes, decoded,
                   encoded - started, finished - encoded, with_ms_ssim)
        )
    return points


def _nvcodec_points(source: LoadedInput, codec: str, model: str, device: str, with_ms_ssim: bool) -> list[RDPoint]:
    import nvcodec
    from nvcodec import registry

    spec = registry.get_spec(model)
    # Warm-up (not timed): load the weights and run one tiny encode/decode so that one-time costs
    # (weights, entropy tables, torch's thread pool and kernels) stay out of the measured fps.
    warm = source.frames[:1, : min(64, source.info.height), : min(64, source.info.width)]
    nvcodec.decode(nvcodec.encode(warm, codec=codec, quality=0, model=model, device=device), device=device)
    points = []
    for quality in range(spec.quality_levels):
        started = time.perf_counter()
        stream = nvcodec.encode(source.frames, codec=codec, quality=quality, model=model, device=device)
        if device == "cuda":
            _cuda_sync()
        encoded = time.perf_counter()
        decoded = nvcodec.decode(stream, device=device)
        if device == "cuda":
            _cuda_sync()
        finished = time.perf_counter()
        points.append(_point(source, codec, model, "quality", quality, len(stream), decoded, encoded - started, finished - encoded,
                             with_ms_ssim))
    return points


def _cuda_sync() -> None:
    import torch

    torch.cuda.synchronize()


def compute_bd_rates(points: Sequence[RDPoint], inputs: Sequence[InputInfo], anchor_video: str, anchor_image: str) -> list[BDRateEntry]:
    """BD-rate (PSNR-RGB and MS-SSIM dB) of every codec on every input against that input's anchor."""
    entries = []
    for info in inputs:
        anchor = anchor_image if info.kind == "image" else anchor_video
        mine = [p for p in points if p.input == info.name]
        anchor_points = [p for p in mine if p.codec == anchor]
        if not anchor_points:
            continue
        codecs = list(dict.fromkeys(p.codec for p in mine))
        for codec in codecs:
            test = [p for p in mine if p.codec == codec]
            entries.append(
                BDRateEntry(
                    input=info.name,
                    codec=codec,
                    anchor=anchor,
                    bd_rate_psnr_rgb=bd_rate([p.bpp for p in anchor_points], [p.psnr_rgb for p in anchor_points],
                                             [p.bpp for p in test], [p.psnr_rgb for p in test]),
                    bd_rate_ms_ssim=bd_rate([p.bpp for p in anchor_points], [p.ms_ssim_db for p in anchor_points],
                                            [p.bpp for p in test], [p.ms_ssim_db for p in test]),
                )
            )
    return entries


def _machine(device: str) -> MachineInfo:
    import av
    import torch

    return MachineInfo(
        platform=platform.platform(),
        python=platform.python_version(),
        cpu_count=os.cpu_count() or 0,
        torch=torch.__version__,
        av=av.__version__,
        ffmpeg=str(getattr(av, "ffmpeg_version_info", "unknown")),
        device=device if device == "cpu" else f"cuda ({torch.cuda.get_device_name()})",
    )


def run_rd(paths: Sequence[str | os.PathLike], options: RDOptions, log: LogFn | None = None,
           command: str = "") -> RDResults:
    """Run the RD benchmark on ``paths``; ``log`` receives one line per finished point."""
    log = log or (lambda line: None)
    unknown = [c for c in options.codecs if c not in ALL_CODECS]
    if unknown:
        raise InputError(f"unknown codec(s) {', '.join(unknown)}; choose from {', '.join(ALL_CODECS)}")
    if not paths:
        raise InputError("no inputs given")
    for path in paths:
        io.probe(path)  # fail on a bad input before hours of work, not after
    models = resolve_models(options.codecs, options.models, log)
    codecs = tuple(c for c in options.codecs if c not in NVCODEC_CODECS or c in models)
    points: list[RDPoint] = []
    inputs: list[InputInfo] = []
    for path, name in zip(paths, _unique_names(paths)):
        source = load_input(path, options.frames, options.crop, name)
        inputs.append(source.info)
        log(f"{name}: {source.info.kind}, {source.info.frames} frame(s) {source.info.width}x{source.info.height}")
        for codec in codecs:
            if codec in NVCODEC_CODECS:
                new = _nvcodec_points(source, codec, models[codec], options.device, options.ms_ssim)
            else:
                new = _classical_points(source, codec, options.params_for(codec), options.ms_ssim)
            for p in new:
                log(f"  {codec:<9} {p.setting:<11} {p.bpp:8.4f} bpp  {p.psnr_rgb:6.2f} dB  MS-SSIM {p.ms_ssim:.4f}  "
                    f"enc {p.encode_fps:7.2f} fps  dec {p.decode_fps:7.2f} fps")
            points.extend(new)
    return RDResults(
        schema_version=SCHEMA_VERSION,
        created_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        command=command,
        machine=_machine(options.device),
        anchor_video=options.anchor_video,
        anchor_image=options.anchor_image,
        codecs=tuple(_codec_info(c, models.get(c)) for c in codecs),
        inputs=tuple(inputs),
        points=tuple(points),
        bd_rates=tuple(compute_bd_rates(points, inputs, options.anchor_video, options.anchor_image)),
    )


def _fmt_pct(value: float) -> str:
    return "   n/a" if not math.isfinite(value) else f"{value:+6.1f}%"


def format_table(results: RDResults) -> str:
    """Per input: each codec's rate/quality range, median speed and BD-rates; then the mean over inputs."""
    lines = []
    bd = {(e.input, e.codec): e for e in results.bd_rates}
    header = (f"{'codec':<10}{'pts':>4}  {'bpp range':>17}  {'PSNR-RGB range':>15}  {'enc fps':>8}  {'dec fps':>8}  "
              f"{'BD-rate PSNR':>12}  {'BD-rate MS-SSIM':>15}")
    for info in results.inputs:
        anchor = results.anchor_for(info)
        has_anchor = anchor in results.codecs_for(info.name)
        lines.append(
            f"{info.name} ({info.kind}, {info.frames} frame(s) {info.width}x{info.height}); "
            + (f"BD-rate vs {anchor}" if has_anchor else f"anchor {anchor} not run: no BD-rates")
        )
        lines.append(header)
        for codec in results.codecs_for(info.name):
            pts = results.points_for(info.name, codec)
            entry = bd.get((info.name, codec))
            lines.append(
                f"{codec:<10}{len(pts):>4}  {pts[0].bpp:7.4f} .. {pts[-1].bpp:7.4f}  "
                f"{min(p.psnr_rgb for p in pts):6.2f} .. {max(p.psnr_rgb for p in pts):5.2f}  "
                f"{float(np.median([p.encode_fps for p in pts])):8.2f}  {float(np.median([p.decode_fps for p in pts])):8.2f}  "
                f"{_fmt_pct(entry.bd_rate_psnr_rgb) if entry else '   n/a':>12}  {_fmt_pct(entry.bd_rate_ms_ssim) if entry else '   n/a':>15}"
            )
        lines.append("")
    if len(results.inputs) > 1:
        lines.append("mean BD-rate over inputs (inputs where it is defined / all)")
        for codec in dict.fromkeys(e.codec for e in results.bd_rates):
            rows = [e for e in results.bd_rates if e.codec == codec]
            psnr = [e.bd_rate_psnr_rgb for e in rows if math.isfinite(e.bd_rate_psnr_rgb)]
            msssim = [e.bd_rate_ms_ssim for e in rows if math.isfinite(e.bd_rate_ms_ssim)]
            anchors = ",".join(sorted({e.anchor for e in rows}))
            lines.append(
                f"{codec:<10} vs {anchors:<6} PSNR {_fmt_pct(float(np.mean(psnr)) if psnr else math.nan)} ({len(psnr)}/{len(rows)})"
                f"   MS-SSIM {_fmt_pct(float(np.mean(msssim)) if msssim else math.nan)} ({len(msssim)}/{len(rows)})"
            )
    return "\n".join(lines).rstrip() + "\n"


RESULT_FILES = ("results.json", "results.csv", "rd.png")


def write_outputs(results: RDResults, out_dir: str | os.PathLike) -> list[Path]:
    """Write results.json, results.csv and rd.png into ``out_dir`` (created if missing)."""
    from nvcodec.bench.plot import plot_rd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in RESULT_FILES]
    write_json(results, paths[0])
    write_csv(results, paths[1])
    plot_rd(results, paths[2])
    return paths

