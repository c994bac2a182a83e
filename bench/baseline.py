"""Classic per-video NeRV, for comparison only: the same decoder trained from scratch on one video.

Not part of the codec (so it lives in ``bench/``, not in ``hypernerv/``). One decoder per spatial tile (the same ``TileGrid`` as the codec), whose
frame time spans the WHOLE video (``t = i / num_frames``, as in NeRV), with free (unmodulated)
weights initialised at random and fitted with Adam on random minibatches of frames. Returns PSNR
against accumulated training wall time, so that encode-speed benchmarks can find the time the
baseline needs to reach the hypernetwork's single-pass PSNR.

Simplifications (written down because the papers do not fix them): the biases of the NeRV layers
are shared by the tile decoders (weights are per tile); evaluation time is not counted as training.

The baseline gets its best settings we found, so that speed-ups against it are not flattered: He
initialisation (as the meta-learned base weights) and Adam lr 8e-3. The sweep behind that choice
(first 24 frames of the shared carphone clip, one thread while another job shared the CPU; seconds
of training at the first evaluation reaching 17 dB / 21 dB): PyTorch's default init, lr 2e-3 (this
baseline's first version): 9.8 / 22.7. He init, lr 1e-3: 9.1 / 21.0; 2e-3: 6.3 / 14.2;
4e-3: 4.4 / 9.4; 8e-3: 3.0 / 9.1; 1.6e-2: 6.6 / 21.5.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nvcodec.geometry import TileGrid, frames_to_tensor, tensor_to_frames
from nvcodec.hypernerv.decoder import DecoderConfig, NervDecoder
from nvcodec.metrics import psnr_rgb

__all__ = ["BaselinePoint", "BaselineResult", "fit_per_video_nerv"]


@dataclass(frozen=True)
class BaselinePoint:
    train_seconds: float  # accumulated optimisation wall time (evaluation excluded)
    steps: int
    psnr: float  # dB, RGB, uint8 reconstruction: mean of per-frame PSNR (nvcodec.metrics.psnr_rgb)


@dataclass(frozen=True)
class BaselineResult:
    points: list[BaselinePoint]
    num_params: int
    reconstruction: np.ndarray  # (T, H, W, 3) uint8 at the end


def fit_per_video_nerv(
    frames: np.ndarray,
    config: DecoderConfig,
    time_budget_s: float | None = None,
    eval_growth: float = 1.25,
    target_psnr: float | None = None,
    batch_frames: int = 8,
    lr: float = 8e-3,
    seed: int = 0,
    max_steps: int | None = None,
) -> BaselineResult:
    """Fit per-tile NeRV decoders to ``frames`` (T, H, W, 3) uint8 for ``time_budget_s`` seconds
    of optimisation or ``max_steps`` steps, whichever comes first (at least one must be given).

    Evaluates (all frames) after steps 1, 2, 3, ... growing geometrically by ``eval_growth``, and
    at the end; stops early once ``target_psnr`` is reached at an evaluation (so the time to reach
    it is known to within a factor ``eval_growth``).
    """
    if time_budget_s is None and max_steps is None:
        raise ValueError("give time_budget_s or max_steps")
    num_frames, height, width, _ = frames.shape
    tile = config.tile_size
    grid = TileGrid(height, width, tile, tile, 0)
    video = frames_to_tensor(frames)  # (T, 3, H, W)
    targets = grid.split(video).contiguous()  # (num_tiles, T, 3, tile, tile)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation; the caller's generator is left alone
        torch.manual_seed(seed)
        decoder = NervDecoder(config)
        weights = {}
        for spec in decoder.layer_specs():
            weight = torch.empty(grid.num_tiles, *spec.shape)  # (B, C_out, C_in, k, k)
            for index in range(grid.num_tiles):
                torch.nn.init.kaiming_normal_(weight[index], nonlinearity="relu")  # as NervDecoder's base weights
            weights[spec.name] = torch.nn.Parameter(weight)
    params = list(weights.values()) + list(decoder.biases.values())
    optimizer = torch.optim.Adam(params, lr=lr)
    times = torch.arange(num_frames, dtype=torch.float32) / num_frames  # NeRV: time over the whole video

    def evaluate() -> tuple[float, np.ndarray]:
        with torch.no_grad():
            parts = [decoder.decode(weights, times[i : i + 16]) for i in range(0, num_frames, 16)]  # (B, f, 3, t, t)
            merged = grid.merge(torch.cat(parts, dim=1))  # (T, 3, H, W)
        recon = tensor_to_frames(merged)
        return psnr_rgb(frames, recon), recon

    next_eval = 1
    points: list[BaselinePoint] = []
    generator = torch.Generator().manual_seed(seed)
    trained, steps = 0.0, 0
    recon = np.zeros_like(frames)
    while True:
        start = time.perf_counter()
        index = torch.randperm(num_frames, generator=generator)[:batch_frames]
        output = decoder.decode(weights, times[index])  # (B, f, 3, tile, tile)
        loss = F.mse_loss(output, targets[:, index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        trained += time.perf_counter() - start
        steps += 1
        done = (time_budget_s is not None and trained >= time_budget_s) or (max_steps is not None and steps >= max_steps)
        if done or steps >= next_eval:
            next_eval = max(steps + 1, int(steps * eval_growth))
            psnr, recon = evaluate()
            points.append(BaselinePoint(trained, steps, psnr))
            if target_psnr is not None and psnr >= target_psnr:
                done = True
        if done:
            break
    num_params = sum(p.numel() for p in params)
    return BaselineResult(points, num_params, recon)
