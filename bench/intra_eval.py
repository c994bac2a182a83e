"""RD evaluation of the intra codec against JPEG (Pillow) on still images, plus 768x512 timings.

For every image and every quality level: real bytes (the whole one-frame ``.nvc`` file, as
``nvcodec encode`` writes it: container header + the frame's chunk) -> bpp, and PSNR-RGB of the
*decoded* frame (decoded from the bytes, and checked equal to the encoder's reconstruction).
JPEG: the RD benchmark's anchor (``classical.CODECS["jpeg"]``: Pillow, 4:2:0, optimised Huffman)
at qualities 5..95, bytes = the whole file. BD-rate (``bench/bdrate.py``) of intra vs JPEG per
image, and the mean over images.

    python -m nvcodec.bench.intra_eval --checkpoint runs/intra-small/checkpoints/last.ckpt
    python -m nvcodec.bench.intra_eval --model intra-small            # shipped weights
    python -m nvcodec.bench.intra_eval --checkpoint ABLATION.ckpt --anchor-checkpoint REF.ckpt --no-jpeg
    python -m nvcodec.bench.intra_eval --reference-checkpoint runs/intra-v2-twin-reference/checkpoints/last.ckpt
    python -m nvcodec.bench.intra_eval --compare OLD/rd.json NEW/rd.json  # two earlier runs, no encoding

    python -m nvcodec.bench.intra_eval --model intra-small --split train/configs/intra-v2-diag-intra.yaml
    python -m nvcodec.bench.intra_eval --model intra-small --split CONFIG --refine-steps 0,100,200 --levels 3

``--split CONFIG`` evaluates on the validation split of a training config: the files its
``data.exclude`` lists (never trained on), found under ``--images`` (searched recursively).
``--refine-steps K,...`` adds encode-time refinement rows: bpp, PSNR and encode seconds per K.
``--anchor-checkpoint`` adds the BD-rate of the model against another checkpoint (ablations);
``--compare OLD NEW`` encodes nothing: the per-image and mean BD-rate of NEW's intra points against OLD's,
two ``rd.json`` files this tool wrote (e.g. the previous weights' run at an earlier commit);
``--reference-checkpoint`` evaluates the diagnosis reference (``codec/reference.py``, trained with
``reference: true``) instead: its two rANS strings framed as an intra chunk in a one-frame ``.nvc``
file of the same header, so that its bytes count what intra's do (no stream format decodes it);
``--spectrum`` prints the low-frequency energy share of each latent slice (``bench/analysis.py``).
``--ceiling`` prints, per image and level, the PSNR of the transforms alone (``g_s(g_a(x))`` with the
level's gains and no quantisation) beside the coded PSNR from the real bytes: where the two are
equal, the quantiser is not what limits quality (``ceiling.json`` with ``--out``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nvcodec import container, io
from nvcodec.bench import classical
from nvcodec.bench.bdrate import bd_rate
from nvcodec.bench.analysis import slice_low_frequency_shares
from nvcodec.codec.model import IntraCodec, IntraCompressed
from nvcodec.codec.reference import GainedMeanScaleHyperprior
from nvcodec.checkpoints import load_checkpoint, load_reference_checkpoint
from nvcodec.codec.video import IntraVideoCodec, header_params, pack_chunk
from nvcodec.errors import InputError
from nvcodec.geometry import crop_to, frames_to_tensor, pad_to_multiple, tensor_to_frames
from nvcodec.interface import ChunkData, EncodedVideo
from nvcodec.io import read_video
from nvcodec.metrics import psnr_rgb
from nvcodec.registry import load_codec, weights_fingerprint

__all__ = [
    "RDPoint", "ImageBDRate", "Timing", "RefinePoint", "CeilingPoint", "load_checkpoint_model", "validation_files",
    "intra_points", "refine_points", "ceiling_points", "jpeg_points", "time_codec", "load_reference_model",
    "reference_points", "main",
]

DEFAULT_IMAGES = "../shared/media"
JPEG_QUALITIES = tuple(range(5, 100, 5))


@dataclass(frozen=True)
class RDPoint:
    image: str
    codec: str  # "intra" | "jpeg" | "reference" (the diagnosis reference)
    setting: int  # intra quality level or JPEG quality
    num_bytes: int
    bpp: float
    psnr_rgb: float


@dataclass(frozen=True)
class ImageBDRate:
    image: str
    anchor: str  # "jpeg" or the anchor checkpoint
    bd_rate: float  # percent, negative = fewer bits than the anchor at equal PSNR-RGB


@dataclass(frozen=True)
class Timing:
    height: int
    width: int
    quality: int
    num_bytes: int
    encode_s: float  # best of ``repeats``
    decode_s: float
    threads: int


def load_checkpoint_model(path: str | Path) -> IntraCodec:
    """Rebuild the model of a Lightning checkpoint of ``IntraSystem``, ready to code."""
    model = load_checkpoint(path, codec="intra")
    model.update_entropy_models()
    return model


def load_reference_model(path: str | Path) -> GainedMeanScaleHyperprior:
    """Rebuild the diagnosis reference of a checkpoint of ``IntraSystem(reference=True)``, ready to code."""
    model = load_reference_checkpoint(path)
    model.update_entropy_models()
    return model


def reference_points(model: GainedMeanScaleHyperprior, name: str, image: np.ndarray) -> list[RDPoint]:
    """Like ``intra_points`` for the reference: real rANS strings, PSNR of what decodes from them; bytes
    of the one-frame ``.nvc`` file they make as an intra-small chunk (same header and framing)."""
    height, width = image.shape[:2]
    padded = pad_to_multiple(frames_to_tensor(image)[None], model.config.pad_multiple)
    latent_hw = (padded.shape[-2] // model.config.stride, padded.shape[-1] // model.config.stride)
    points = []
    for quality in range(model.config.quality_levels):
        compressed = model.compress(padded, quality)
        decoded = tensor_to_frames(crop_to(model.decompress(compressed), height, width)[0])
        chunk = pack_chunk(IntraCompressed(compressed.y_string, compressed.z_string, quality, (height, width), latent_hw))
        num_bytes = file_bytes("intra", "intra-small", height, width, header_params(quality, model.config.pad_multiple), [ChunkData(0, 1, chunk)])
        points.append(RDPoint(name, "reference", quality, num_bytes, 8.0 * num_bytes / (height * width), psnr_rgb(image, decoded)))
    return points


def validation_files(config: str | Path, images: str | Path) -> list[Path]:
    """The validation split of a training config (its ``data.exclude``), found under ``images``."""
    import yaml

    names = (yaml.safe_load(Path(config).read_text()).get("data") or {}).get("exclude") or []
    if not names:
        raise SystemExit(f"{config} lists no validation files (data.exclude)")
    found = {p.name: p for p in sorted(Path(images).rglob("*")) if p.name in names}
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"validation files not found under {images}: {', '.join(missing)}")
    return [found[n] for n in names]


@dataclass(frozen=True)
class RefinePoint:
    image: str
    quality: int
    refine_steps: int
    num_bytes: int
    bpp: float
    psnr_rgb: float
    encode_s: float


def refine_points(codec: IntraVideoCodec, name: str, image: np.ndarray, quality: int, steps: list[int]) -> list[RefinePoint]:
    """Encode ``image`` at ``quality`` with each refinement budget; real bytes, decoded PSNR, encode time."""
    height, width = image.shape[:2]
    points = []
    for k in steps:
        start = time.perf_counter()
        encoded = codec.encode(image[None], quality, refine_steps=k)
        seconds = time.perf_counter() - start
        decoded = codec.decode_chunk(encoded.params, encoded.chunks[0], height, width)
        if not np.array_equal(decoded, encoded.reconstruction):
            raise RuntimeError(f"{name} q{quality} K={k}: decoder output differs from the encoder's reconstruction")
        num_bytes = stream_bytes(codec, image, encoded)
        points.append(RefinePoint(name, quality, k, num_bytes, 8.0 * num_bytes / (height * width), psnr_rgb(image, decoded[0]), seconds))
    return points


@dataclass(frozen=True)
class CeilingPoint:
    image: str
    quality: int
    psnr_unquantised: float  # g_s(g_a(x) * gain * inv_gain), to uint8 like a decode
    psnr_coded: float  # the decoded frame of the real stream
    bpp: float  # the real stream


def ceiling_points(codec: IntraVideoCodec, name: str, image: np.ndarray) -> list[CeilingPoint]:
    """Per level: PSNR of the transforms without quantisation vs the coded PSNR, on ``image`` cropped
    to the model's padding multiple (so that both see the same pixels)."""
    model = codec.model
    size = model.config.pad_multiple
    image = np.ascontiguousarray(image[: image.shape[0] // size * size, : image.shape[1] // size * size])
    x = frames_to_tensor(image)[None]  # (1, 3, H, W)
    coded = intra_points(codec, name, image)
    points = []
    with torch.inference_mode():
        y = model.analysis(x)
        for point in coded:
            plain = tensor_to_frames(model.synthesis(y * model._gain(point.setting), point.setting)[0])
            points.append(CeilingPoint(name, point.setting, psnr_rgb(image, plain), point.psnr_rgb, point.bpp))
    return points


def intra_points(codec: IntraVideoCodec, name: str, image: np.ndarray) -> list[RDPoint]:
    """Encode + decode ``image`` (H, W, 3) uint8 at every quality level."""
    height, width = image.shape[:2]
    points = []
    for quality in range(codec.quality_levels):
        encoded = codec.encode(image[None], quality)
        chunk = encoded.chunks[0]
        decoded = codec.decode_chunk(encoded.params, chunk, height, width)
        if not np.array_equal(decoded, encoded.reconstruction):
            raise RuntimeError(f"{name} q{quality}: decoder output differs from the encoder's reconstruction")
        num_bytes = stream_bytes(codec, image, encoded)
        points.append(RDPoint(name, "intra", quality, num_bytes, 8.0 * num_bytes / (height * width), psnr_rgb(image, decoded[0])))
    return points


def jpeg_points(name: str, image: np.ndarray, qualities: tuple[int, ...] = JPEG_QUALITIES) -> list[RDPoint]:
    """The RD benchmark's JPEG anchor (``classical``) on ``image`` (H, W, 3) at ``qualities``."""
    height, width = image.shape[:2]
    points = []
    for quality in qualities:
        stream = classical.encode(image[None], "jpeg", quality)
        decoded = classical.decode(stream)
        points.append(RDPoint(name, "jpeg", quality, stream.num_bytes, 8.0 * stream.num_bytes / (height * width), psnr_rgb(image, decoded)))
    return points


def stream_bytes(codec: IntraVideoCodec, image: np.ndarray, encoded: EncodedVideo) -> int:
    """Size of the complete ``.nvc`` file of one coded image, packed as ``nvcodec.encode`` packs it."""
    height, width = image.shape[:2]
    return file_bytes(codec.codec_name, codec.model_name, height, width, dict(encoded.params), list(encoded.chunks))


def file_bytes(codec: str, model: str, height: int, width: int, params: dict, chunks: list[ChunkData]) -> int:
    """Size of the complete ``.nvc`` file with this header and these chunks."""
    stream = container.pack_stream(
        codec=codec, model=model, weights=weights_fingerprint(model), width=width, height=height,
        fps=io.DEFAULT_FPS, params=params, chunks=chunks,
    )
    return len(stream)


def time_codec(codec: IntraVideoCodec, image: np.ndarray, quality: int, repeats: int = 3) -> Timing:
    """Best-of-``repeats`` wall time of encode and decode of one image (H, W, 3)."""
    height, width = image.shape[:2]
    encode_times, decode_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        encoded = codec.encode(image[None], quality)
        encode_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        codec.decode_chunk(encoded.params, encoded.chunks[0], height, width)
        decode_times.append(time.perf_counter() - start)
    return Timing(height, width, quality, stream_bytes(codec, image, encoded), min(encode_times), min(decode_times), torch.get_num_threads())


def mean_slice_spectrum(model: IntraCodec, images: dict[str, np.ndarray], cutoff: float = 0.25) -> list[float]:
    """Mean over images of each coded slice's low-frequency energy share of y (before gain)."""
    shares = []
    with torch.inference_mode():
        for image in images.values():
            x = frames_to_tensor(image)[None]  # (1, 3, H, W)
            size = model.config.pad_multiple
            x = x[..., : x.shape[-2] // size * size, : x.shape[-1] // size * size]
            y = model.analysis(x)
            shares.append([s.low_share for s in slice_low_frequency_shares(y, model.config.coding_slice_sizes, cutoff)])
    return [float(v) for v in np.mean(np.array(shares), axis=0)]


def _bd_table(title: str, anchor_label: str, anchor: list[RDPoint], test: list[RDPoint]) -> list[ImageBDRate]:
    results = []
    print(f"\n{title}")
    for name in dict.fromkeys(p.image for p in test):
        a = [p for p in anchor if p.image == name]
        t = [p for p in test if p.image == name]
        bd = bd_rate([p.bpp for p in a], [p.psnr_rgb for p in a], [p.bpp for p in t], [p.psnr_rgb for p in t])
        results.append(ImageBDRate(name, anchor_label, bd))
        print(f"  {name:18s} {bd:+7.2f} %")
    finite = [r.bd_rate for r in results if math.isfinite(r.bd_rate)]
    print(f"  {'MEAN':18s} {float(np.mean(finite)) if finite else float('nan'):+7.2f} %  ({len(finite)}/{len(results)} images)")
    return results


LEARNED = ("intra", "reference")  # the codecs of an rd.json that --compare reads (JPEG points are its anchor)


def rd_points_of(path: str | Path, codec: str | None = None) -> list[RDPoint]:
    """The ``codec`` points of an ``rd.json`` this tool wrote; by default its learned codec's
    (``intra``, or ``reference`` for a ``--reference-checkpoint`` run), so that twins compare."""
    try:
        payload = json.loads(Path(path).read_text())
        points = [RDPoint(**p) for p in payload["points"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not an intra_eval rd.json ({exc})") from exc
    if codec is None:
        learned = sorted({p.codec for p in points} & set(LEARNED))
        if len(learned) != 1:
            raise InputError(f"{path}: expected the points of one of {', '.join(LEARNED)}, found {learned or 'none'}")
        codec = learned[0]
    points = [p for p in points if p.codec == codec]
    if not points:
        raise InputError(f"{path}: no {codec} points")
    return points


def _image_768x512(images: dict[str, np.ndarray]) -> np.ndarray:
    source = images.get("motorcycle_left") if "motorcycle_left" in images else next(iter(images.values()))
    return np.asarray(Image.fromarray(source).resize((768, 512), Image.BICUBIC))


def _write_json(folder: str | Path, name: str, payload: dict) -> Path:
    """Write ``payload`` to ``folder/name`` (folder created if missing); returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(payload, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="Lightning checkpoint of IntraSystem")
    source.add_argument("--model", default="intra-small", help="registered model with shipped weights")
    source.add_argument("--reference-checkpoint", help="Lightning checkpoint of IntraSystem(reference=True): the compressai reference")
    parser.add_argument("--anchor-checkpoint", help="also report BD-rate against this IntraSystem checkpoint")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="BD-rate of NEW rd.json's learned points (intra or reference) vs OLD's; encodes nothing")
    parser.add_argument("--spectrum", action="store_true", help="print each slice's low-frequency energy share")
    parser.add_argument("--ceiling", action="store_true", help="PSNR of the transforms without quantisation vs coded")
    parser.add_argument("--images", default=DEFAULT_IMAGES, help="folder of .png/.jpg images")
    parser.add_argument("--split", help="training config whose validation split (data.exclude) to evaluate on")
    parser.add_argument("--refine-steps", default=None, help="comma-separated K: encode-time refinement rows")
    parser.add_argument("--levels", default=None, help="comma-separated quality levels for --refine-steps (default: middle)")
    parser.add_argument("--out", default=None, help="folder for rd.json / rd.csv")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-jpeg", action="store_true")
    parser.add_argument("--timing", action="store_true", help="also time encode/decode of a 768x512 image")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.compare:
        try:
            old, new = (rd_points_of(path) for path in args.compare)
        except InputError as exc:
            parser.error(str(exc))
        missing = sorted({p.image for p in new} - {p.image for p in old})
        if missing:
            parser.error(f"{args.compare[0]} has no {old[0].codec} points for {', '.join(missing)}")
        _bd_table(f"BD-rate of {args.compare[1]} ({new[0].codec}) vs {args.compare[0]} ({old[0].codec}), PSNR-RGB:", args.compare[0], old, new)
        for level in sorted({p.setting for p in new}):
            rows = [p for p in new if p.setting == level]
            print(f"  q{level} {np.mean([p.bpp for p in rows]):.3f} bpp / {np.mean([p.psnr_rgb for p in rows]):.2f} dB", end="")
        print()
        return 0

    if args.reference_checkpoint and (args.refine_steps is not None or args.ceiling or args.spectrum or args.timing or args.anchor_checkpoint):
        parser.error("--reference-checkpoint gives RD points only (no --refine-steps, --ceiling, --spectrum, --timing, --anchor-checkpoint)")
    reference = load_reference_model(args.reference_checkpoint) if args.reference_checkpoint else None
    if reference is not None:
        codec = None
        label = args.reference_checkpoint
    elif args.checkpoint:
        model = load_checkpoint_model(args.checkpoint)
        codec = IntraVideoCodec(model, "intra-small")
        label = args.checkpoint
    else:
        codec = load_codec(args.model)
        label = args.model
    if args.split:
        files = validation_files(args.split, args.images)
    else:
        files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    images = {p.stem: read_video(p).frames[0] for p in files}

    points: list[RDPoint] = []
    jpeg: list[RDPoint] = []
    print(f"# intra eval of {label} on {len(images)} images ({args.images}), {args.threads} thread(s)")
    refined: list[RefinePoint] = []
    if args.refine_steps is not None:
        steps = [int(k) for k in args.refine_steps.split(",")]
        levels = [int(q) for q in args.levels.split(",")] if args.levels else [codec.default_quality]
        print(f"{'image':32s} {'q':>2s} {'K':>4s} {'bytes':>7s} {'bpp':>7s} {'psnr':>6s} {'enc s':>7s}")
        for name, image in images.items():
            for quality in levels:
                for point in refine_points(codec, name, image, quality, steps):
                    refined.append(point)
                    print(f"{name:32s} {quality:2d} {point.refine_steps:4d} {point.num_bytes:7d} {point.bpp:7.4f} {point.psnr_rgb:6.2f} {point.encode_s:7.1f}", flush=True)
        for quality in levels:
            for k in steps:
                rows = [p for p in refined if p.quality == quality and p.refine_steps == k]
                print(f"MEAN q{quality} K={k:<4d} bpp {np.mean([p.bpp for p in rows]):.4f}  PSNR {np.mean([p.psnr_rgb for p in rows]):.2f} dB  "
                      f"encode {np.mean([p.encode_s for p in rows]):.1f} s/image")
        if args.out:
            _write_json(args.out, "refine.json", {"source": label, "points": [asdict(p) for p in refined]})
        return 0
    if args.ceiling:
        ceiling: list[CeilingPoint] = []
        print(f"{'image':18s} {'q':>2s} {'bpp':>7s} {'coded':>6s} {'unquantised':>11s}")
        for name, image in images.items():
            for point in ceiling_points(codec, name, image):
                ceiling.append(point)
                print(f"{name:18s} {point.quality:2d} {point.bpp:7.4f} {point.psnr_coded:6.2f} {point.psnr_unquantised:11.2f}", flush=True)
        for quality in range(codec.quality_levels):
            rows = [p for p in ceiling if p.quality == quality]
            print(f"MEAN q{quality} bpp {np.mean([p.bpp for p in rows]):.4f}  coded {np.mean([p.psnr_coded for p in rows]):.2f} dB  "
                  f"unquantised {np.mean([p.psnr_unquantised for p in rows]):.2f} dB")
        if args.out:
            _write_json(args.out, "ceiling.json", {"source": label, "points": [asdict(p) for p in ceiling]})
        return 0
    print(f"{'image':18s} {'q':>2s} {'bytes':>7s} {'bpp':>7s} {'psnr':>6s}")
    for name, image in images.items():
        intra = reference_points(reference, name, image) if reference is not None else intra_points(codec, name, image)
        for point in intra:
            print(f"{name:18s} {point.setting:2d} {point.num_bytes:7d} {point.bpp:7.4f} {point.psnr_rgb:6.2f}")
        points.extend(intra)
        if not args.no_jpeg:
            jpeg.extend(jpeg_points(name, image))
    results: list[ImageBDRate] = []
    if jpeg:
        tested = "the reference" if reference is not None else "intra"
        results = _bd_table(f"BD-rate of {tested} vs JPEG (PSNR-RGB, pchip over log-rate):", "jpeg", jpeg, points)
    anchor_results: list[ImageBDRate] = []
    if args.anchor_checkpoint:
        anchor_codec = IntraVideoCodec(load_checkpoint_model(args.anchor_checkpoint), "intra-small")
        anchor = [p for name, image in images.items() for p in intra_points(anchor_codec, name, image)]
        anchor_results = _bd_table(f"BD-rate of {label} vs {args.anchor_checkpoint} (PSNR-RGB):", args.anchor_checkpoint, anchor, points)
    spectrum = None
    if args.spectrum:
        spectrum = mean_slice_spectrum(codec.model, images)
        sizes = codec.model.config.coding_slice_sizes
        print("\nlow-frequency (<= 0.25 cyc/sample) share of y's AC energy per slice (coding order):")
        print("  " + "  ".join(f"slice{i}({c}ch) {v:.3f}" for i, (c, v) in enumerate(zip(sizes, spectrum))))
    timing = None
    if args.timing:
        timing = time_codec(codec, _image_768x512(images), quality=codec.default_quality)
        print(
            f"\n768x512 q{timing.quality}: encode {timing.encode_s:.3f} s, decode {timing.decode_s:.3f} s "
            f"({timing.num_bytes} bytes, {timing.threads} thread(s), best of 3)"
        )
    if args.out:
        payload = {
            "source": label,
            "points": [asdict(p) for p in points + jpeg],
            "bd_rate_vs_jpeg": [asdict(r) for r in results],
            "bd_rate_vs_anchor": [asdict(r) for r in anchor_results],
            "slice_low_frequency_share": spectrum,
            "timing": asdict(timing) if timing else None,
        }
        out = _write_json(args.out, "rd.json", payload)
        with open(out / "rd.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(asdict(points[0]).keys()))
            writer.writeheader()
            writer.writerows(asdict(p) for p in points + jpeg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
