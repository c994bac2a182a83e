"""Entropy coding of token sets (B, N, C): one factorised density per (token, channel) [and level].

A thin wrapper over compressai's ``EntropyBottleneck`` and rANS coder (nothing re-implemented):
the tokens of one sample become the EB's channels, so every token position keeps its own learned
density (weight tokens of different layers have very different statistics).

``levels`` > 1 gives every quality level its own densities (one EB per level): the levels quantise
the same codes with gains that differ by up to ~8x, and one density shared by all of them fits none
(measured on hypernerv-small's codes: a shared refit costs +57 % bits at the finest level, issue #15).
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor, nn

from nvcodec.entropy.rans import require_ready
from nvcodec.errors import BitstreamError

__all__ = ["TokenEntropyCoder", "shift_density"]


@torch.no_grad()
def shift_density(bottleneck: EntropyBottleneck, shift: Tensor) -> None:
    """Move each channel's learned density by ``shift`` (C,): p'(x) = p(x - shift), quantiles likewise.

    Its cumulative is a small per-channel network whose first layer is ``softplus(M0) x + b0``, so
    ``b0 -= softplus(M0) * shift`` is an exact translation. Needed before fitting a density whose mass
    sits far from the data: there its cumulative's sigmoids saturate, the likelihood is floored and
    the fit gets no gradient to move it (issue #15: hypernerv-small's levels 0-2 coded 12-19 constant
    token values per tile at the 1e-9 floor, ~16 bits each).
    """
    shift = shift.reshape(-1, 1, 1).to(bottleneck.biases[0])
    bottleneck.biases[0] -= torch.nn.functional.softplus(bottleneck.matrices[0]) * shift
    bottleneck.quantiles += shift


class TokenEntropyCoder(nn.Module):
    """Quantise and code token sets of fixed shape (N, C); one bytes string per sample."""

    def __init__(self, num_tokens: int, channels: int, levels: int = 1) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.num_tokens = num_tokens
        self.channels = channels
        self.levels = levels
        if levels == 1:  # one density for every level (the state-dict layout of the first shipped files)
            self.bottleneck = EntropyBottleneck(num_tokens * channels)
        else:
            self.bottlenecks = nn.ModuleList(EntropyBottleneck(num_tokens * channels) for _ in range(levels))
        for model in self._models:
            # The CDF tables are derived from the parameters by update(): keep them out of the state
            # dict so weights files load into a fresh model (whose tables are empty) and are rebuilt.
            model._non_persistent_buffers_set.update({"_quantized_cdf", "_offset", "_cdf_length"})

    @property
    def _models(self) -> list[EntropyBottleneck]:
        return [self.bottleneck] if self.levels == 1 else list(self.bottlenecks)

    def model_for(self, level: int) -> EntropyBottleneck:
        """The entropy model of quality ``level`` (the shared one when ``levels`` is 1)."""
        if self.levels == 1:
            return self.bottleneck
        if not 0 <= level < self.levels:
            raise ValueError(f"level {level} outside 0..{self.levels - 1}")
        return self.bottlenecks[level]

    def _checked_levels(self, levels: Tensor | None, batch: int) -> Tensor:
        """``levels`` (B,) of a coder with one density per level (refused when missing or misshaped)."""
        if levels is None or levels.shape != (batch,):
            raise ValueError(f"a coder with {self.levels} level densities needs levels of shape ({batch},)")
        return levels

    def _flat(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 3 or tuple(tokens.shape[1:]) != (self.num_tokens, self.channels):
            raise ValueError(f"tokens of shape {tuple(tokens.shape)}, coder expects (B, {self.num_tokens}, {self.channels})")
        return tokens.reshape(tokens.shape[0], -1, 1)  # (B, N*C, 1): tokens as EB channels

    def forward(self, tokens: Tensor, training: bool | None = None, levels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``tokens`` (B, N, C) -> (quantised tokens, likelihoods), both (B, N, C).

        ``training`` True: additive uniform noise (the rate proxy); False: rounding around the
        learned medians, exactly what :meth:`compress` / :meth:`decompress` produce. ``levels`` (B,):
        each sample's quality level (needed when the coder has one density per level).
        """
        flat = self._flat(tokens)
        if self.levels == 1:
            quantised, likelihoods = self.bottleneck(flat, training=training)
            return quantised.view_as(tokens), likelihoods.view_as(tokens)
        levels = self._checked_levels(levels, tokens.shape[0])
        quantised, likelihoods = torch.empty_like(flat), torch.empty_like(flat)
        for level in levels.unique().tolist():  # each level's samples through its own density
            index = (levels == level).nonzero().flatten()
            quantised[index], likelihoods[index] = self.bottlenecks[level](flat[index], training=training)
        return quantised.view_as(tokens), likelihoods.view_as(tokens)

    def _medians(self, levels: Tensor | None, batch: int) -> Tensor:
        """(1 or B, N, C) learned medians: rounding is centred on them."""
        shape = (1, self.num_tokens, self.channels)
        if self.levels == 1:
            return self.bottleneck._get_medians().detach().reshape(shape)
        per_level = torch.stack([m._get_medians().detach().reshape(shape[1:]) for m in self.bottlenecks])  # (L, N, C)
        return per_level[self._checked_levels(levels, batch)]

    def quantize_ste(self, tokens: Tensor, levels: Tensor | None = None) -> Tensor:
        """Rounded tokens (as :meth:`decompress` gives) with a straight-through gradient."""
        medians = self._medians(levels, tokens.shape[0])
        rounded = torch.round(tokens - medians) + medians
        return tokens + (rounded - tokens).detach()

    @property
    def is_ready(self) -> bool:
        return all(m._quantized_cdf.numel() > 0 for m in self._models)

    def update(self, force: bool = False) -> bool:
        """Build the CDF tables; must run before :meth:`compress` / :meth:`decompress`."""
        updated = [m.update(force=force) for m in self._models]
        return any(updated)

    def aux_loss(self) -> Tensor:
        return sum(m.loss() for m in self._models)

    def _check_ready(self, level: int) -> EntropyBottleneck:
        model = self.model_for(level)
        require_ready(model, "hypernerv weight tokens" if self.levels == 1 else f"hypernerv weight tokens, level {level}")
        return model

    def compress(self, tokens: Tensor, level: int = 0) -> list[bytes]:
        """(B, N, C) tokens of quality ``level`` -> B rANS strings."""
        return list(self._check_ready(level).compress(self._flat(tokens)))

    def decompress(self, strings: list[bytes], level: int = 0) -> Tensor:
        """B rANS strings of quality ``level`` -> quantised tokens (B, N, C). A malformed string raises ``BitstreamError``."""
        model = self._check_ready(level)
        try:
            flat = model.decompress(list(strings), (1,))  # (B, N*C, 1)
        except Exception as exc:  # the rANS extension raises assorted types on garbage
            raise BitstreamError(f"token entropy decoding failed: {exc}") from None
        if not torch.isfinite(flat).all():
            raise BitstreamError("token entropy decoding produced non-finite values")
        return flat.view(len(strings), self.num_tokens, self.channels)
