"""Retune hypernerv's quality levels so that they differ in PSNR, each with its own token densities.

Why (issue #15): the shipped hypernerv-small's four levels differ in rate, hardly in PSNR (0.03 dB
from q0 to q3 on carphone): its decoder barely notices the quantisation of the codes, so coarser
steps buy rate for little quality, and one token density shared by all levels fits none of them.

What it does, on TRAINING clips only (the data of ``--data-config``; the validation clip Megamind is
not in it):

1. Reads ``--source`` into ``level_entropy_models=True`` (from a file with one shared density, every
   level starts from it) and measures the training-clip PSNR of the finest level's gains times a scale ``s``.
2. Gains are the finest level's learned gains times a scale per level (bisection on log s): the top
   level's scale gives ``--top-drop-db`` less training PSNR than the finest gains (finer steps cost
   rate and buy nothing), each lower level's ``--step-db`` less than the level above.
3. Fits each level's token density (compressai EntropyBottleneck: noise likelihood, plus the
   quantiles' aux loss) to the codes times that level's gains, after moving every channel's density
   so that its median is the codes' median (``entropy.tokens.shift_density``: a density whose mass
   sits far from the data gets no gradient to move there). Nothing else changes: the hypernetwork,
   token decoder and NeRV decoder are the shipped ones.
   ``--keep-gains`` skips steps 1-2: only the densities are refitted, at the source's gains.
4. Writes a checkpoint that ``nvcodec export CKPT -o hypernerv-small`` ships (model_overrides
   ``level_entropy_models: true``) and that the benchmarks read with ``--checkpoint``.

    git show 1756257~1:nvcodec/weights/hypernerv-small.safetensors > /tmp/hypernerv-small-450aa906.safetensors
    OMP_NUM_THREADS=1 python tools/hypernerv_retune_levels.py runs/hypernerv-levels/levels2.ckpt \
        --source /tmp/hypernerv-small-450aa906.safetensors
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import yaml

from nvcodec.entropy.tokens import shift_density
from nvcodec.registry import create_model, initial_weights
from nvcodec.train.video_data import ClipDataset, load_images, load_videos


def training_clips(config: Path, count: int, seed: int) -> torch.Tensor:
    """``count`` random (T, 3, tile, tile) clips from a hypernerv training config's data section."""
    data = yaml.safe_load(config.read_text())["data"]
    videos = load_videos(data["videos"], data.get("video_scales") or [1.0])
    images = load_images(data.get("images") or [])
    dataset = ClipDataset(videos, images, data["clip_len"], data["tile_size"], count, data.get("synthetic_fraction", 0.3), seed=seed)
    return torch.stack([dataset[i] for i in range(count)])


@torch.no_grad()
def psnr_at(model, codes: torch.Tensor, clips: torch.Tensor, gains: torch.Tensor, level: int) -> float:
    """PSNR (dB) of ``clips`` decoded from ``codes`` rounded at ``gains`` (C,), with level ``level``'s medians."""
    levels = torch.full((codes.shape[0],), level, dtype=torch.long)
    scaled = codes * gains
    quantised = model.token_coder.quantize_ste(scaled, levels) / gains
    mse = 0.0
    for start in range(0, codes.shape[0], 32):
        part = slice(start, start + 32)
        mse += float(((model.decode_codes(quantised[part], clips.shape[1]) - clips[part]) ** 2).sum())
    return -10.0 * math.log10(mse / clips.numel())


def fit_density(bottleneck, values: torch.Tensor, steps: int, lr: float, batch: int, generator: torch.Generator) -> float:
    """Fit an EntropyBottleneck to ``values`` (B, N*C, 1); returns the final mean bits per sample."""
    bottleneck.train()
    net = [p for n, p in bottleneck.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in bottleneck.named_parameters() if n.endswith("quantiles")]
    optimizer = torch.optim.Adam(net, lr=lr)
    aux_optimizer = torch.optim.Adam(aux, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr * 0.05)
    bits = float("nan")
    for _ in range(steps):
        index = torch.randint(0, values.shape[0], (batch,), generator=generator)
        _, likelihoods = bottleneck(values[index], training=True)
        loss = -torch.log2(likelihoods.clamp_min(1e-9)).sum() / batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        aux_loss = bottleneck.loss()
        aux_optimizer.zero_grad()
        aux_loss.backward()
        aux_optimizer.step()
        bits = float(loss.detach())
    bottleneck.eval()
    return bits


def choose_scales(model, codes: torch.Tensor, clips: torch.Tensor, args: argparse.Namespace) -> list[float]:
    """Steps 1-2: per-level scales of the finest learned gains, by training PSNR; installs the new gains."""
    levels = model.config.quality_levels
    finest = model.log_gains.detach()[levels - 1].exp()  # (C,)
    measure = slice(0, args.psnr_clips)

    def psnr(scale: float, level: int) -> float:
        return psnr_at(model, codes[measure], clips[measure], finest * scale, level)

    def largest_drop_to(target: float, level: int, high: float) -> float:
        """The smallest scale <= ``high`` whose training PSNR is still >= ``target`` (bisection on log s)."""
        good, bad = high, high / 16  # PSNR falls with the scale
        for _ in range(10):
            mid = math.sqrt(good * bad)
            good, bad = (mid, bad) if psnr(mid, level) >= target else (good, mid)
        return good

    finest_psnr = psnr(1.0, levels - 1)
    print(f"finest learned gains (level {levels - 1}, scale 1): training PSNR {finest_psnr:.2f} dB", flush=True)
    scales = [1.0] * levels
    top = finest_psnr - args.top_drop_db
    high = 1.0
    for level in range(levels - 1, -1, -1):
        target = top - args.step_db * (levels - 1 - level)
        scales[level] = high = largest_drop_to(target, level, high)
        print(f"level {level}: scale {high:.4f}, training PSNR {psnr(high, level):.2f} dB (target {target:.2f})", flush=True)

    with torch.no_grad():
        model.log_gains.copy_((finest[None] * torch.tensor(scales)[:, None]).log())
    return scales


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="checkpoint to write (for nvcodec export / --checkpoint)")
    parser.add_argument("--model", default="hypernerv-small")
    parser.add_argument("--source", default="hypernerv-small",
                        help="weights to retune: a registered name (its shipped file) or a .safetensors path; "
                        "the shipped c79cdb5a came from 450aa906 (`git show 1756257~1:nvcodec/weights/hypernerv-small.safetensors`)")
    parser.add_argument("--data-config", type=Path, default=Path("train/configs/hypernerv-small-stage3.yaml"))
    parser.add_argument("--clips", type=int, default=1536, help="training clips whose codes fit the densities")
    parser.add_argument("--psnr-clips", type=int, default=256, help="of those, the clips that measure PSNR per scale")
    parser.add_argument("--top-drop-db", type=float, default=0.05,
                        help="the top level's training PSNR below the finest learned gains' (finer steps cost rate and buy nothing)")
    parser.add_argument("--step-db", type=float, default=0.5, help="training PSNR between neighbouring levels")
    parser.add_argument("--steps", type=int, default=800, help="density fitting steps per level")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=1515)
    parser.add_argument("--keep-gains", action="store_true", help="keep the source's gains; refit the densities only")
    args = parser.parse_args(argv)

    started = time.time()
    torch.manual_seed(args.seed)  # compressai's noise proxy draws from the global generator (the shipped fit was unseeded)
    overrides = {"level_entropy_models": True}
    model = create_model(args.model, **overrides)
    if str(args.source).endswith(".safetensors"):  # read as tensors: an older file's config is not the registered one
        from safetensors.torch import load_file

        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(args.source)).items()}
    else:
        state = initial_weights(model, args.source)[1]
    own = model.state_dict()
    for key, value in state.items():
        if key.startswith("token_coder.bottleneck."):
            for level in range(model.config.quality_levels):  # every level starts from the shared density
                own[key.replace("token_coder.bottleneck.", f"token_coder.bottlenecks.{level}.")] = value.clone()
        else:
            own[key] = value
    model.load_state_dict(own, strict=True)
    model.eval()

    clips = training_clips(args.data_config, args.clips, args.seed)
    with torch.no_grad():
        codes = torch.cat([model.hypernet(clips[i : i + 64]) for i in range(0, len(clips), 64)])  # (B, N_w, C)
    print(f"{len(clips)} training clips -> codes {tuple(codes.shape)} ({time.time() - started:.0f} s)", flush=True)

    levels = model.config.quality_levels
    scales = choose_scales(model, codes, clips, args) if not args.keep_gains else None
    generator = torch.Generator().manual_seed(args.seed)
    gains = model.log_gains.detach().exp()
    fit = slice(args.psnr_clips, None)  # the densities fit the other clips
    for level in range(levels):
        values = (codes[fit] * gains[level]).reshape(codes[fit].shape[0], -1, 1)
        density = model.token_coder.model_for(level)
        shift = values[:, :, 0].median(dim=0).values - density._get_medians().detach().flatten()
        print(f"level {level}: densities moved to the codes' medians (|shift| mean {shift.abs().mean():.3f}, max {shift.abs().max():.2f})", flush=True)
        shift_density(density, shift)
        bits = fit_density(density, values, args.steps, args.lr, 256, generator)
        pixels = clips.shape[1] * clips.shape[-1] * clips.shape[-2]
        print(f"level {level}: density fitted, {bits / pixels:.4f} bpp (noisy estimate, training clips)", flush=True)
    model.update_entropy_models(force=True)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {"model_name": args.model, "model_overrides": overrides, "level_scales": scales, "kept_gains": args.keep_gains, "tool": "tools/hypernerv_retune_levels.py"},
        },
        args.output,
    )
    print(f"wrote {args.output} ({time.time() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
