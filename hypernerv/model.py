"""HyperNerv: a transformer hypernetwork emits per-tile weight tokens for a NeRV decoder in one pass.

Paper: "Fast Encoding and Decoding for Implicit Video Representation" (NeRV-Enc / NeRV-Dec,
ECCV 2024), with NeRV (NeurIPS 2021) / HNeRV (CVPR 2023) decoders and TransINR weight tokens.

Data flow for B tile clips at quality level q (see ``hypernet.py`` and ``decoder.py``)::

    clip (B, T, 3, tile, tile) --HyperNetwork--> codes y (B, N_w, C)
    y * gain[q] --round (noise/STE in training)--> rANS bitstream (TokenEntropyCoder, one string per tile)
    y_hat / gain[q] --TokenDecoder--> modulations --fuse with base weights--> per-tile NeRV decoders
    decoders(t = i / T for each frame i) --one grouped conv per layer--> frames (B, n, 3, tile, tile)

Variable rate: ONE model, ``len(lambdas)`` quality levels. Each level has a learned per-channel
quantisation gain; training samples a quality per clip and minimises ``bpp + lambda[q] * MSE``.
``refine_steps`` > 0 continues the encode with Adam steps on the continuous codes against the same
RD loss (straight-through rounding for distortion, noise for rate), starting from the hypernetwork;
its distortion may weigh the frames by clip position (``edge_weights``: the codec weighs the edges).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvcodec.entropy.tokens import TokenEntropyCoder

from .decoder import DecoderConfig, LayerSpec, NervDecoder
from .hypernet import HypernetConfig, HyperNetwork, TokenDecoder

__all__ = ["HyperNervConfig", "HyperNerv", "HyperNervOutput", "RDLoss", "CompressedClip", "edge_weights", "weighted_mse"]


# Adam step size of the optional encode-time code refinement, the one default every caller uses
# (0.01 / 0.03 / 0.1 gave +0.9 / +2.3 / +4.1 dB at 20 steps on hypernerv-small).
REFINE_LR = 0.05
# Distortion weight of a clip's first and last frames in that refinement (see edge_weights and
# HyperNervVideoCodec.refine_edge_weight); 1 weighs every frame alike.
REFINE_EDGE_WEIGHT = 3.0


def weighted_mse(per_frame: Tensor, weights: Tensor | None) -> Tensor:
    """(B, n) per-frame MSE -> (B,): the mean over frames, weighted by ``weights`` (n,) normalised to mean 1."""
    if weights is None:
        return per_frame.mean(1)
    weights = weights.to(per_frame)
    return (per_frame * (weights / weights.mean())).mean(1)


def edge_weights(clip_len: int, edge_weight: float) -> Tensor | None:
    """(clip_len,) distortion weights by clip position: ``edge_weight`` at the first and last frame, 1 at
    the centre, linear in the distance from the centre between; None when ``edge_weight`` is 1."""
    if edge_weight < 1.0:
        raise ValueError(f"edge_weight must be >= 1, got {edge_weight}")
    if edge_weight == 1.0:
        return None
    distance = (torch.arange(clip_len, dtype=torch.float32) - (clip_len - 1) / 2).abs() / max((clip_len - 1) / 2, 1)
    return 1.0 + (edge_weight - 1.0) * distance


@dataclass(frozen=True)
class HyperNervConfig:
    """The whole model: the NeRV decoder's shape, the hypernetwork's shape, the rate points.

    The defaults are the shipped ``hypernerv-small``; other registry names override sub-config fields
    (``create_config("hypernerv-tiny")``). ``hypernet.tile_size`` must equal the decoder's tile.
    """

    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    hypernet: HypernetConfig = field(default_factory=HypernetConfig)
    # rate: loss = bpp + lambda * MSE (MSE on [0, 1] RGB), one lambda per quality level
    lambdas: tuple[float, ...] = (30.0, 90.0, 270.0, 810.0)
    # True: each quality level has its own token densities (entropy.tokens.TokenEntropyCoder levels);
    # False: one density for all levels, as the first shipped files.
    level_entropy_models: bool = False

    def __post_init__(self) -> None:
        if self.hypernet.tile_size != self.decoder.tile_size:
            raise ValueError(f"hypernet.tile_size {self.hypernet.tile_size} differs from the decoder's tile {self.decoder.tile_size}")

    @property
    def clip_len(self) -> int:
        """T: frames per clip (= per chunk)."""
        return self.hypernet.clip_len

    @property
    def tile_size(self) -> int:
        return self.decoder.tile_size

    @property
    def quality_levels(self) -> int:
        return len(self.lambdas)

    @classmethod
    def upgrade_dict(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """A config as stored in weights metadata -> the nested form (the one place old forms are read).

        Weights written before the nesting (the shipped ``hypernerv-small`` file) hold one flat record
        with a ``tiny`` switch and ``rgb_skips``. ``tiny: true`` meant a fixed preset whatever the other
        fields said (never shipped: refused); ``rgb_skips`` (an experiment, since removed)
        must be false. Raises ``ValueError`` for those.
        """
        if "decoder" in raw or "hypernet" in raw:
            return raw
        flat = dict(raw)
        if flat.pop("rgb_skips", False):
            raise ValueError("config uses rgb_skips, an experiment this version no longer has")
        if flat.pop("tiny", False):
            raise ValueError("config uses the old tiny switch; rebuild the model from the registry's hypernerv-tiny")
        decoder_keys = {f.name for f in fields(DecoderConfig)}
        hypernet_keys = {f.name for f in fields(HypernetConfig)}
        decoder = {k: flat.pop(k) for k in list(flat) if k in decoder_keys}
        hypernet = {k: flat.pop(k) for k in list(flat) if k in hypernet_keys}
        hypernet["tile_size"] = DecoderConfig(**decoder).tile_size  # the flat form derived it
        return {"decoder": decoder, "hypernet": hypernet, **flat}


@dataclass(frozen=True)
class HyperNervOutput:
    """Training forward pass of B tile clips."""

    reconstruction: Tensor  # (B, F, 3, tile, tile) in [0, 1], frames ``frame_index`` of the clip
    likelihoods: Tensor  # (B, N_w, C) of the gain-scaled, noisy codes
    codes: Tensor  # (B, N_w, C) continuous hypernetwork output
    frame_index: Tensor  # (F,) which of the clip's T frames were decoded


@dataclass(frozen=True)
class RDLoss:
    loss: Tensor  # scalar: mean over clips of bpp + lambda * mse
    bpp: Tensor  # (B,) estimated bits per pixel of each tile clip
    mse: Tensor  # (B,)

    @property
    def psnr(self) -> Tensor:
        return -10.0 * torch.log10(self.mse.clamp_min(1e-10))  # (B,)


@dataclass(frozen=True)
class CompressedClip:
    """The weight tokens of one clip's tiles, entropy coded."""

    strings: list[bytes]  # one rANS string per tile
    quality: int
    num_frames: int  # n <= T frames decode from times i / T, i < n


class HyperNerv(nn.Module):
    """Hypernetwork encoder + token entropy model + modulated NeRV decoder (see module docstring)."""

    def __init__(self, config: HyperNervConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = NervDecoder(config.decoder)
        specs = self.decoder.layer_specs()
        hcfg = config.hypernet
        self.hypernet = HyperNetwork(hcfg, specs)
        self.token_decoder = TokenDecoder(hcfg, specs)
        levels = config.quality_levels
        self.token_coder = TokenEntropyCoder(self.hypernet.num_tokens, hcfg.code_channels, levels if config.level_entropy_models else 1)
        # Gains 0.5 .. 4 geometric at start: higher quality = finer quantisation of the codes.
        init = torch.linspace(math.log(0.5), math.log(4.0), levels)[:, None].expand(levels, hcfg.code_channels)
        self.log_gains = nn.Parameter(init.clone())  # (levels, C)
        self.register_buffer("lambdas", torch.tensor(config.lambdas, dtype=torch.float32), persistent=False)

    # ---------------------------------------------------------------- helpers
    @property
    def layer_specs(self) -> list[LayerSpec]:
        return self.decoder.layer_specs()

    @property
    def num_weight_tokens(self) -> int:
        return self.hypernet.num_tokens

    def frame_times(self, num_frames: int, device: torch.device | None = None, first: int = 0) -> Tensor:
        """(n,) normalised times i / T for i = first .. first + n - 1: a short last clip uses the first n."""
        return torch.arange(first, first + num_frames, dtype=torch.float32, device=device) / self.config.clip_len

    def gains(self, qualities: Tensor) -> Tensor:
        """``qualities``: (B,) long -> (B, 1, C) quantisation gains."""
        return self.log_gains[qualities].exp()[:, None, :]

    def pad_clip(self, clip: Tensor) -> Tensor:
        """(B, n, 3, h, w) with n <= T -> (B, T, 3, h, w), repeating the last frame (hypernetwork input)."""
        n, clip_len = clip.shape[1], self.config.clip_len
        if n > clip_len or n < 1:
            raise ValueError(f"clip of {n} frames, model clip length is {clip_len}")
        if n == clip_len:
            return clip
        return torch.cat([clip, clip[:, -1:].expand(-1, clip_len - n, -1, -1, -1)], dim=1)

    def stem_offset(self, decoded_codes: Tensor, frame_times: Tensor) -> Tensor | None:
        """The time-dependent stem term (B, F, S*S*C0) of a model with ``temporal_terms`` K > 0, else None.

        ``sum_k u^k * coeff_k`` with ``u`` = the frame's place in the clip, -1 at frame 0 and +1 at
        frame T - 1 (times ``i / T`` as from :meth:`frame_times`).
        """
        coeffs = self.token_decoder.temporal(decoded_codes)  # (B, K, D) or None
        if coeffs is None:
            return None
        half = (self.config.clip_len - 1) / 2
        u = (frame_times * self.config.clip_len - half) / max(half, 1.0)  # (F,)
        basis = u[:, None] ** torch.arange(1, coeffs.shape[1] + 1, dtype=u.dtype, device=u.device)  # (F, K)
        return torch.einsum("fk,bkd->bfd", basis, coeffs)

    def decode_codes(self, decoded_codes: Tensor, num_frames: int, first: int = 0) -> Tensor:
        """(B, N_w, C) dequantised codes -> frames ``first .. first + n - 1`` of the clip (B, n, 3, tile, tile)."""
        modulations = self.token_decoder(decoded_codes)
        times = self.frame_times(num_frames, decoded_codes.device, first)
        return self.decoder(modulations, times, self.stem_offset(decoded_codes, times))

    # --------------------------------------------------------------- training
    def forward(self, clip: Tensor, qualities: Tensor, frame_index: Tensor | None = None, context: Tensor | None = None) -> HyperNervOutput:
        """``clip``: (B, T, 3, tile, tile) in [0, 1]; ``qualities``: (B,) quality indices.

        ``frame_index`` (F,): decode only these frames (a cheaper, unbiased training estimate of
        the distortion; the hypernetwork still reads all T). Default: all T frames. ``context``:
        the frames around the clip that a hypernetwork with ``context_frames`` reads (see HyperNetwork).
        """
        codes = self.hypernet(clip, context)  # (B, N_w, C)
        gains = self.gains(qualities)  # (B, 1, C)
        scaled = codes * gains
        _, likelihoods = self.token_coder(scaled, training=self.training, levels=qualities)
        quantised = self.token_coder.quantize_ste(scaled, qualities)  # rounded values, straight-through gradient
        if frame_index is None:
            frame_index = torch.arange(clip.shape[1], device=clip.device)
        decoded = quantised / gains
        times = frame_index.float() / self.config.clip_len
        reconstruction = self.decoder(self.token_decoder(decoded), times, self.stem_offset(decoded, times))  # (B, F, 3, t, t)
        return HyperNervOutput(reconstruction, likelihoods, codes, frame_index)

    def rd_loss(self, output: HyperNervOutput, clip: Tensor, qualities: Tensor, frame_weights: Tensor | None = None) -> RDLoss:
        """``bpp + lambda[quality] * MSE`` per tile clip (rate over all the clip's pixels), averaged.

        ``frame_weights`` (T,): weight of each clip position in the distortion term (normalised to mean
        1 over the decoded frames); ``RDLoss.mse`` stays the plain mean.
        """
        batch, frames, _, height, width = clip.shape
        bits = -torch.log2(output.likelihoods.clamp_min(1e-9)).flatten(1).sum(1)  # (B,)
        bpp = bits / (frames * height * width)
        target = clip[:, output.frame_index]  # (B, F, 3, tile, tile)
        per_frame = F.mse_loss(output.reconstruction, target, reduction="none").flatten(2).mean(2)  # (B, F)
        weights = None if frame_weights is None else frame_weights.to(per_frame.device)[output.frame_index]
        loss = (bpp + self.lambdas[qualities] * weighted_mse(per_frame, weights)).mean()
        mse = per_frame.mean(1)  # (B,)
        return RDLoss(loss, bpp, mse)

    def aux_loss(self) -> Tensor:
        return self.token_coder.aux_loss()

    def update_entropy_models(self, force: bool = True) -> bool:
        return self.token_coder.update(force=force)

    # ------------------------------------------------------------- refinement
    def refine(
        self, codes: Tensor, clip: Tensor, quality: int, steps: int, lr: float = REFINE_LR, frame_weights: Tensor | None = None,
    ) -> Tensor:
        """Adam steps on continuous codes (B, N_w, C) against the RD loss on ``clip`` (B, n, 3, t, t).

        Rate: noisy likelihoods; distortion: straight-through rounding (what the decoder sees), its
        frames weighted by ``frame_weights`` (n,) (see :func:`weighted_mse`). Only the codes change;
        model parameters get no gradient.
        """
        qualities = torch.full((codes.shape[0],), quality, dtype=torch.long, device=codes.device)
        gains = self.gains(qualities).detach()
        lam = float(self.config.lambdas[quality])
        frames, height, width = clip.shape[1], clip.shape[-2], clip.shape[-1]
        with torch.enable_grad():
            codes = codes.detach().clone().requires_grad_(True)
            optimizer = torch.optim.Adam([codes], lr=lr)
            for _ in range(steps):
                scaled = codes * gains
                _, likelihoods = self.token_coder(scaled, training=True, levels=qualities)
                recon = self.decode_codes(self.token_coder.quantize_ste(scaled, qualities) / gains, frames)
                bits = -torch.log2(likelihoods.clamp_min(1e-9)).flatten(1).sum(1)  # (B,)
                bpp = bits / (frames * height * width)
                per_frame = F.mse_loss(recon, clip, reduction="none").flatten(2).mean(2)  # (B, n)
                loss = (bpp + lam * weighted_mse(per_frame, frame_weights)).sum()  # tiles are independent: sum keeps per-tile step sizes
                (grad,) = torch.autograd.grad(loss, [codes])
                optimizer.zero_grad(set_to_none=True)
                codes.grad = grad
                optimizer.step()
        return codes.detach()

    # ----------------------------------------------------------------- coding
    def compress(
        self, clip: Tensor, quality: int, refine_steps: int = 0, refine_lr: float = REFINE_LR, context: Tensor | None = None,
        refine_weights: Tensor | None = None,
    ) -> CompressedClip:
        """``clip``: (B, n, 3, tile, tile) tiles of one clip, n <= T -> entropy-coded weight tokens.

        ``context``: (B, 2F, 3, tile, tile), the F frames before and after the clip, for a
        hypernetwork with ``context_frames`` F (see HyperNetwork; refused by one without).
        ``refine_weights`` (n,): the refinement's distortion weight of each frame (see :meth:`refine`).

        Raises ``EntropyModelNotReadyError`` before :meth:`update_entropy_models`.
        """
        if not 0 <= quality < self.config.quality_levels:
            raise ValueError(f"quality level {quality} outside 0..{self.config.quality_levels - 1}")
        with torch.no_grad():
            codes = self.hypernet(self.pad_clip(clip), context)  # (B, N_w, C)
        if refine_steps > 0:
            codes = self.refine(codes, clip, quality, refine_steps, refine_lr, refine_weights)
        qualities = torch.full((clip.shape[0],), quality, dtype=torch.long, device=clip.device)
        with torch.no_grad():
            strings = self.token_coder.compress(codes * self.gains(qualities), quality)
        return CompressedClip(strings, quality, clip.shape[1])

    @torch.no_grad()
    def decompress(self, compressed: CompressedClip, first: int = 0) -> Tensor:
        """Entropy-coded weight tokens -> tiles (B, n, 3, tile, tile) in [0, 1] of clip frames ``first ..``."""
        qualities = torch.full((len(compressed.strings),), compressed.quality, dtype=torch.long, device=self.log_gains.device)
        quantised = self.token_coder.decompress(compressed.strings, compressed.quality)  # (B, N_w, C)
        return self.decode_codes(quantised / self.gains(qualities), compressed.num_frames, first)
