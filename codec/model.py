"""IntraCodec: learned image codec with Hadamard window attention, frequency-disentangled latent,
channel-wise autoregressive slice coding and gain-unit variable rate.

Reconstruction of "Frequency Disentangled Features in Neural Image Compression" (ICIP 2023) on top
of SwinT-ChARM / ChARM (Minnen & Singh 2020) and ELIC (uneven slices); variable rate with gain units
("asymmetric gained" / ELIC-style). Data flow (N = channels, M = latent_channels, H = hyper_channels)::

    x (B,3,H,W) --g_a--> y (B,M,H/16,W/16)  [low | high] channels (FrequencyDisentangle)
       y * gain[q] --HyperPrior: h_a -> z (B,H,H/64,W/64) -> EntropyBottleneck -> h_s--> supports
       --SliceCoder: slices (e.g. 16,16,32,64), low frequency first, mean/scale from supports + earlier
         slices, LRP --> y_hat
       y_hat * inv_gain[q] --g_s--> x_hat (B,3,H,W)

    g_a: conv5/2 GDN conv5/2 GDN conv5/2 GDN | AttnBlock@8 | conv5/2 | AttnBlock@16 | FreqDisentangle
    g_s: conv3 | AttnBlock@16 | deconv5/2 IGDN | AttnBlock@8 | deconv5/2 IGDN deconv5/2 IGDN deconv5/2

With ``bypass`` (config), a conv5/2 (N -> M) takes g_a's stride-8 features straight into y, and a
deconv5/2 (M -> N) takes the gained y_hat straight to g_s's first stride-8 features (added before its
IGDN). Without them everything at stride 16 passes through N channels: 64 numbers per 16x16x3
block for N = 64, which bounds what any rate can buy (a linear code of 64 numbers per block reaches
~30 dB on intra's validation split, 128 numbers ~34 dB; issue #14's note). Both start at zero, so a
model without them fine-tunes from the same function.

With ``detail_units`` (config), g_s gets a residual unit (conv3 LeakyReLU conv3, N channels) after its
stride-4 and its stride-2 IGDN: nonlinear capacity where fine detail is drawn, which the plain
deconv/IGDN stack lacks. Their last conv starts at zero, so they too begin as the identity.
``stride8_units`` K (config) adds K more such units after g_s's stride-8 attention block, where a
unit costs a sixteenth of one at stride 2: decoder capacity for the transforms' ceiling (issue #14).

With ``linear_path`` (config), a linear lapped transform runs beside the nonlinear ones: a conv
(kernel 32, stride 16, 3 -> M) adds to y straight from the pixels, and a transposed conv (M -> 3, the
same geometry) adds to x_hat straight from the inverse-gained y_hat. A learned linear code of M numbers
per 16x16 block is what a PCA reaches (~34 dB on the validation split for M = 128), while the
nonlinear transforms top out near 30.7 dB whatever the rate (issue #14's ceiling); the linear pair
gives every level a direct route to that detail. Both start at zero (no-op), cost ~3 k multiply-adds
per pixel, and the kernels overlap by half a block so that their basis functions do not tile.

Choices where the paper is silent (also in the project report): 4 attention blocks only, at stride
8 and 16, window 8, head dim 16, no shifted windows; the low-frequency path is avgpool2 -> 2 convs
-> bilinear up at stride 16 and gets the first ``low_slices`` slices' channels; gains act on y only
(one learned gain and inverse-gain vector per level, init ``sqrt(lambda_q / lambda_max)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from compressai.layers import GDN
from compressai.models.utils import update_registered_buffers
from torch import Tensor, nn

from nvcodec.codec.layers import AttentionBlock, FrequencyDisentangle, ResidualUnit
from nvcodec.entropy import HyperPrior, SliceCoder, pack_strings, unpack_strings
from nvcodec.entropy.rans import float32
from nvcodec.errors import BitstreamError, InputError
from nvcodec.geometry import crop_to, pad_to_multiple

__all__ = ["IntraConfig", "IntraCodec", "RDOutput", "IntraCompressed", "IntraEncoded"]

DEFAULT_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483)
REFINE_LR = 3e-2  # Adam step size of encode-time latent refinement (``IntraCodec.encode``), the one default


@dataclass(frozen=True)
class IntraConfig:
    """Hyperparameters of ``IntraCodec``; the registry builds ``IntraCodec(IntraConfig(**overrides))``."""

    channels: int = 64  # N, transform width
    latent_channels: int = 128  # M, channels of y
    slice_sizes: tuple[int, ...] = (16, 16, 32, 64)  # coding order, low frequency first; sums to M
    hyper_channels: int = 64  # channels of z and width of h_a / h_s
    hadamard: bool = True  # key-side Hadamard term in the attention score (ablation: False)
    frequency_order: bool = True  # frequency disentangle + uneven low-first slices (ablation: False)
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS  # rate-distortion weight per quality level
    window_size: int = 8  # attention window (tokens per side)
    head_dim: int = 16
    low_slices: int = 2  # leading slices that hold the low-frequency path's channels
    bypass: bool = False  # stride-8 <-> latent convolutions around the N-channel stride-16 stage (see IntraCodec)
    detail_units: bool = False  # g_s residual units after the stride-4 and stride-2 IGDNs (see IntraCodec)
    stride8_units: int = 0  # g_s residual units after the stride-8 attention block (see IntraCodec)
    linear_path: bool = False  # linear lapped transform pixels <-> latent beside g_a / g_s (see IntraCodec)

    def __post_init__(self) -> None:
        if sum(self.slice_sizes) != self.latent_channels:
            raise ValueError(f"slice_sizes {self.slice_sizes} must sum to latent_channels {self.latent_channels}")
        if not 0 < self.low_slices < len(self.slice_sizes):
            raise ValueError(f"low_slices {self.low_slices} must be in 1..{len(self.slice_sizes) - 1}")
        if self.channels % self.head_dim:
            raise ValueError(f"channels {self.channels} not divisible by head_dim {self.head_dim}")
        if len(self.lambdas) < 1:
            raise ValueError("need at least one quality level")
        if self.stride8_units < 0:
            raise ValueError(f"stride8_units {self.stride8_units} must be >= 0")

    @property
    def quality_levels(self) -> int:
        return len(self.lambdas)

    @property
    def heads(self) -> int:
        return self.channels // self.head_dim

    @property
    def coding_slice_sizes(self) -> tuple[int, ...]:
        """Slices actually coded: ``slice_sizes``, or equal slices when frequency ordering is off."""
        if self.frequency_order:
            return self.slice_sizes
        count = len(self.slice_sizes)
        base = self.latent_channels // count
        return (base,) * (count - 1) + (self.latent_channels - base * (count - 1),)

    @property
    def low_channels(self) -> int:
        """Channels of y fed by the low-frequency path (the first ``low_slices`` slices)."""
        return sum(self.slice_sizes[: self.low_slices])

    @property
    def entropy_hidden(self) -> int:
        return self.hyper_channels

    @property
    def stride(self) -> int:
        return 16

    @property
    def pad_multiple(self) -> int:
        """Input sizes are padded to this: latent stride 16 x hyper stride 4."""
        return self.stride * 4


@dataclass(frozen=True)
class RDOutput:
    """``x_hat`` (B, 3, H, W); ``y_likelihoods`` (B, M, H/16, W/16); ``z_likelihoods`` (B, Hc, H/64, W/64)."""

    x_hat: Tensor
    y_likelihoods: Tensor
    z_likelihoods: Tensor

    @property
    def likelihoods(self) -> tuple[Tensor, Tensor]:
        return self.y_likelihoods, self.z_likelihoods

    def bits(self) -> Tensor:
        """Estimated total bits (scalar) from the likelihoods."""
        return -(torch.log2(self.y_likelihoods).sum() + torch.log2(self.z_likelihoods).sum())


@dataclass(frozen=True)
class IntraCompressed:
    """One coded image. ``image_hw``: size before padding; ``latent_hw``: y's size (padded / 16)."""

    y_string: bytes
    z_string: bytes
    quality: int
    image_hw: tuple[int, int]
    latent_hw: tuple[int, int]

    @property
    def num_bytes(self) -> int:
        return len(self.y_string) + len(self.z_string)

    def to_bytes(self) -> bytes:
        """Strings only (the header fields travel in the caller's struct): u32 len + z, u32 len + y."""
        return pack_strings([self.z_string, self.y_string])

    @classmethod
    def from_bytes(
        cls, data: bytes, quality: int, image_hw: tuple[int, int], latent_hw: tuple[int, int]
    ) -> IntraCompressed:
        (z_string, y_string), end = unpack_strings(data, 2)
        if end != len(data):
            raise BitstreamError(f"{len(data) - end} trailing bytes after the latent strings")
        return cls(y_string, z_string, quality, image_hw, latent_hw)


@dataclass(frozen=True)
class IntraEncoded:
    """The encoder's output: the stream and the reconstruction the decoder will produce (1,3,H,W)."""

    compressed: IntraCompressed
    x_hat: Tensor


def _conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def _deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1)


_G_A_STRIDE8 = 7  # g_a[:7] ends with the stride-8 attention block
_G_S_STRIDE8 = 3  # g_s[:3] ends with the first deconv (stride 8, before its IGDN)
_G_S_STRIDE8_END = 5  # g_s[:5] ends with the stride-8 attention block
_G_S_STRIDE4 = 7  # g_s[:7] ends with the stride-4 IGDN
_G_S_STRIDE2 = 9  # g_s[:9] ends with the stride-2 IGDN


class IntraCodec(nn.Module):
    """The learned intra codec (see module docstring). ``forward`` for training, ``compress``/``decompress``
    for real bitstreams (after ``update_entropy_models()``)."""

    def __init__(self, config: IntraConfig) -> None:
        super().__init__()
        self.config = config
        n, m, heads, win, had = config.channels, config.latent_channels, config.heads, config.window_size, config.hadamard
        head: nn.Module
        if config.frequency_order:
            head = FrequencyDisentangle(n, config.low_channels, m - config.low_channels)
        else:
            head = nn.Conv2d(n, m, 3, padding=1)
        self.g_a = nn.Sequential(
            _conv(3, n), GDN(n),
            _conv(n, n), GDN(n),
            _conv(n, n), GDN(n),
            AttentionBlock(n, heads, win, had),  # stride 8
            _conv(n, n),
            AttentionBlock(n, heads, win, had),  # stride 16
            head,
        )  # fmt: skip
        self.g_s = nn.Sequential(
            nn.Conv2d(m, n, 3, padding=1),
            AttentionBlock(n, heads, win, had),  # stride 16
            _deconv(n, n), GDN(n, inverse=True),
            AttentionBlock(n, heads, win, had),  # stride 8
            _deconv(n, n), GDN(n, inverse=True),
            _deconv(n, n), GDN(n, inverse=True),
            _deconv(n, 3),
        )  # fmt: skip
        if config.bypass:
            self.g_a_bypass = _conv(n, m)
            self.g_s_bypass = _deconv(m, n)
            for layer in (self.g_a_bypass, self.g_s_bypass):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        if config.detail_units:
            self.g_s_detail = nn.ModuleList([ResidualUnit(n), ResidualUnit(n)])  # after g_s[:7] and g_s[:9]
        if config.stride8_units:
            self.g_s_stride8 = nn.Sequential(*(ResidualUnit(n) for _ in range(config.stride8_units)))  # after g_s[:5]
        if config.linear_path:
            block = self.config.stride
            self.g_a_linear = nn.Conv2d(3, m, 2 * block, stride=block, padding=block // 2)
            self.g_s_linear = nn.ConvTranspose2d(m, 3, 2 * block, stride=block, padding=block // 2)
            for layer in (self.g_a_linear, self.g_s_linear):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.hyperprior = HyperPrior(m, config.hyper_channels)
        self.slice_coder = SliceCoder(config.coding_slice_sizes, config.entropy_hidden)
        lambdas = torch.tensor(config.lambdas, dtype=torch.float32)
        log_gain = 0.5 * torch.log(lambdas / lambdas.max())  # (L,): quantiser step ~ lambda^-1/2
        self.log_gain = nn.Parameter(log_gain[:, None].repeat(1, m).contiguous())  # (L, M)
        self.log_inv_gain = nn.Parameter(-log_gain[:, None].repeat(1, m).contiguous())  # (L, M)

    # -- helpers ---------------------------------------------------------------------------------
    def _check_quality(self, quality: int) -> int:
        if not 0 <= int(quality) < self.config.quality_levels:
            raise InputError(f"quality {quality} out of range 0..{self.config.quality_levels - 1}")
        return int(quality)

    def _gain(self, quality: int) -> Tensor:
        return self.log_gain[quality].exp()[None, :, None, None]  # (1, M, 1, 1)

    def _inv_gain(self, quality: int) -> Tensor:
        return self.log_inv_gain[quality].exp()[None, :, None, None]

    def analysis(self, x: Tensor) -> Tensor:
        """x (B, 3, H, W) in [0, 1], H and W multiples of 16 -> y (B, M, H/16, W/16), before gain."""
        if not self.config.bypass:
            y = self.g_a(x)
        else:
            stride8 = self.g_a[:_G_A_STRIDE8](x)
            y = self.g_a[_G_A_STRIDE8:](stride8) + self.g_a_bypass(stride8)
        return y + self.g_a_linear(x) if self.config.linear_path else y

    def synthesis(self, y_hat: Tensor, quality: int) -> Tensor:
        """Gained y_hat (B, M, h, w) -> x_hat (B, 3, 16h, 16w) (unclamped)."""
        y = y_hat * self._inv_gain(quality)
        x_hat = self._synthesis(y)
        return x_hat + self.g_s_linear(y) if self.config.linear_path else x_hat

    def _synthesis(self, y: Tensor) -> Tensor:
        """The nonlinear synthesis: inverse-gained y (B, M, h, w) -> (B, 3, 16h, 16w)."""
        stride8 = self.g_s[:_G_S_STRIDE8](y)
        if self.config.bypass:
            stride8 = stride8 + self.g_s_bypass(y)
        stride8 = self.g_s[_G_S_STRIDE8:_G_S_STRIDE8_END](stride8)  # IGDN, attention
        if self.config.stride8_units:
            stride8 = self.g_s_stride8(stride8)
        if not self.config.detail_units:
            return self.g_s[_G_S_STRIDE8_END:](stride8)
        stride4 = self.g_s_detail[0](self.g_s[_G_S_STRIDE8_END:_G_S_STRIDE4](stride8))
        stride2 = self.g_s_detail[1](self.g_s[_G_S_STRIDE4:_G_S_STRIDE2](stride4))
        return self.g_s[_G_S_STRIDE2:](stride2)

    # -- training --------------------------------------------------------------------------------
    def forward(self, x: Tensor, quality: int | None = None, noisy_y_hat: bool = False) -> RDOutput:
        """x: (B, 3, H, W) in [0, 1], H and W multiples of 64. ``quality`` defaults to the top level.

        ``noisy_y_hat``: feed the synthesis ``y + uniform noise`` instead of straight-through rounding
        (see ``SliceCoder.forward``).
        """
        quality = self._check_quality(self.config.quality_levels - 1 if quality is None else quality)
        y = self.analysis(x) * self._gain(quality)
        # Under bf16 autocast (training with ``precision: bf16-mixed``) the transforms and the networks
        # that predict the entropy parameters (h_a, h_s, the slices' mean / scale / LRP nets) run in
        # bfloat16; y, those parameters, the entropy models and the likelihoods are float32, as rates need
        # their precision. Encoding and decoding (no autocast) are float32 throughout.
        y = y.float()
        hyper = self.hyperprior(y)
        sliced = self.slice_coder(y, hyper.mean_support, hyper.scale_support, noisy_y_hat)
        x_hat = self.synthesis(sliced.y_hat, quality)
        return RDOutput(x_hat, sliced.likelihoods, hyper.z_likelihoods)

    def aux_loss(self) -> Tensor:
        """Quantile loss of the EntropyBottleneck (its own optimiser), float32 even under autocast."""
        with float32(self.log_gain):
            return self.hyperprior.entropy_bottleneck.loss()

    def update_entropy_models(self) -> None:
        """Build the CDF tables needed by compress/decompress (compressai ``update(force=True)``)."""
        self.hyperprior.entropy_bottleneck.update(force=True)
        self.slice_coder.update(force=True)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Like nn.Module's, but first resizes compressai's CDF buffers to the stored shapes."""
        state_dict = dict(state_dict)
        names = ("_quantized_cdf", "_offset", "_cdf_length")
        if any(k.startswith("hyperprior.entropy_bottleneck._quantized_cdf") for k in state_dict):
            update_registered_buffers(
                self.hyperprior.entropy_bottleneck, "hyperprior.entropy_bottleneck", names, state_dict
            )
        if "slice_coder.gaussian_conditional.scale_table" in state_dict:
            update_registered_buffers(
                self.slice_coder.gaussian_conditional,
                "slice_coder.gaussian_conditional",
                (*names, "scale_table"),
                state_dict,
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- coding ----------------------------------------------------------------------------------
    def encode(self, x: Tensor, quality: int, refine_steps: int = 0, refine_lr: float = REFINE_LR) -> IntraEncoded:
        """x: (1, 3, H, W) in [0, 1], any H, W >= 1. Returns the stream and the decoder's reconstruction.

        ``refine_steps`` > 0 optimises the gained latent y for the image before coding (encode-time
        refinement, see ``refine_latent``); the decoder and the bitstream format are unchanged, and
        of the plain and the refined stream the one with the lower real rate-distortion cost
        (``lambda * 255^2 * MSE + bpp`` from the bytes) is kept. Raises ``EntropyModelNotReadyError``
        before ``update_entropy_models()``.
        """
        quality = self._check_quality(quality)
        if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
            raise InputError(f"expected one RGB image (1, 3, H, W), got shape {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise InputError("image holds non-finite values")
        image_hw = (int(x.shape[-2]), int(x.shape[-1]))
        with torch.no_grad():
            padded = pad_to_multiple(x, self.config.pad_multiple)
            y = self.analysis(padded) * self._gain(quality)
        if not bool(torch.isfinite(y).all()):  # NaN latents would send the rANS coder into minutes of work
            raise RuntimeError("the analysis transform produced non-finite latents (damaged weights?)")
        plain = self._code_latent(y, quality, image_hw)
        if refine_steps <= 0:
            return plain
        refined_y = self.refine_latent(padded, y, quality, refine_steps, refine_lr)
        refined = self._code_latent(refined_y, quality, image_hw)
        return min((plain, refined), key=lambda encoded: self._rd_cost(x, encoded))

    @torch.inference_mode()
    def _code_latent(self, y: Tensor, quality: int, image_hw: tuple[int, int]) -> IntraEncoded:
        """Gained latent y (1, M, h, w) -> stream + the decoder's reconstruction."""
        z_strings, hyper = self.hyperprior.compress(y)
        y_strings, y_hat = self.slice_coder.compress(y, hyper.mean_support, hyper.scale_support)
        latent_hw = (int(y.shape[-2]), int(y.shape[-1]))
        compressed = IntraCompressed(y_strings[0], z_strings[0], quality, image_hw, latent_hw)
        return IntraEncoded(compressed, self._reconstruct(y_hat, quality, image_hw))

    def _rd_cost(self, x: Tensor, encoded: IntraEncoded) -> float:
        """Real RD cost of a coded image: lambda * 255^2 * MSE + 8 * bytes / pixels."""
        quality = encoded.compressed.quality
        mse = float(torch.mean((encoded.x_hat.float() - x.float()) ** 2))
        pixels = x.shape[-2] * x.shape[-1]
        return self.config.lambdas[quality] * 255.0**2 * mse + 8.0 * encoded.compressed.num_bytes / pixels

    def refine_latent(self, padded: Tensor, y: Tensor, quality: int, steps: int, lr: float = REFINE_LR) -> Tensor:
        """Encode-time refinement: ``steps`` of Adam on the gained latent y (1, M, h, w) against the
        training objective for this image (``padded``: (1, 3, H, W), a multiple of ``pad_multiple``).

        The decoder is frozen: rounding is straight-through for the synthesis, the rate uses the
        entropy models' additive-noise proxy (their training mode), and the step size decays from
        ``lr`` to 0 on a cosine. The noise comes from a forked, fixed-seed generator, so the result
        (and the stream) is deterministic and the caller's random state is left alone.
        """
        lam = self.config.lambdas[quality]
        pixels = padded.shape[-2] * padded.shape[-1]
        target = padded.detach().clone()
        latent = y.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([latent], lr=lr)
        was_training = self.training
        frozen = [p.requires_grad for p in self.parameters()]
        for p in self.parameters():
            p.requires_grad_(False)
        self.train()  # only the entropy models behave differently: noisy likelihoods
        try:
            with torch.enable_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                for step in range(steps):
                    for group in optimizer.param_groups:
                        group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
                    hyper = self.hyperprior(latent)
                    sliced = self.slice_coder(latent, hyper.mean_support, hyper.scale_support)
                    x_hat = self.synthesis(sliced.y_hat, quality)
                    out = RDOutput(x_hat, sliced.likelihoods, hyper.z_likelihoods)
                    loss = lam * 255.0**2 * torch.mean((x_hat - target) ** 2) + out.bits() / pixels
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        finally:
            for p, flag in zip(self.parameters(), frozen):
                p.requires_grad_(flag)
            self.train(was_training)
        return latent.detach()

    def compress(self, x: Tensor, quality: int) -> IntraCompressed:
        """x: (1, 3, H, W) in [0, 1] -> ``IntraCompressed``."""
        return self.encode(x, quality).compressed

    def _reconstruct(self, y_hat: Tensor, quality: int, image_hw: tuple[int, int]) -> Tensor:
        return crop_to(self.synthesis(y_hat, quality), *image_hw).clamp(0.0, 1.0)

    def latent_hw_for(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """y's spatial size for an image of ``image_hw`` (after padding to ``pad_multiple``)."""
        mult = self.config.pad_multiple
        return tuple(-(-s // mult) * mult // self.config.stride for s in image_hw)  # type: ignore[return-value]

    @torch.inference_mode()
    def decompress(self, compressed: IntraCompressed) -> Tensor:
        """``IntraCompressed`` -> x_hat (1, 3, H, W) in [0, 1]; raises ``BitstreamError`` on bad headers."""
        quality = int(compressed.quality)
        if not 0 <= quality < self.config.quality_levels:
            raise BitstreamError(f"quality {quality} out of range 0..{self.config.quality_levels - 1}")
        expected = self.latent_hw_for(compressed.image_hw)
        if tuple(compressed.latent_hw) != expected or min(compressed.image_hw) < 1:
            raise BitstreamError(
                f"latent size {compressed.latent_hw} does not match image size {compressed.image_hw} (expected {expected})"
            )
        h, w = expected
        hyper = self.hyperprior.decompress([compressed.z_string], (h // 4, w // 4))
        y_hat = self.slice_coder.decompress([compressed.y_string], hyper.mean_support, hyper.scale_support)
        return self._reconstruct(y_hat, quality, compressed.image_hw)

