"""Entropy coding of token sets (B, N, C): one factorised density per (token, channel).

A thin wrapper over compressai's ``EntropyBottleneck`` and rANS coder (nothing re-implemented):
the tokens of one sample become the EB's channels, so every token position keeps its own learned
density (weight tokens of different layers have very different statistics).
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor, nn

from nvcodec.entropy.rans import require_ready
from nvcodec.errors import BitstreamError

__all__ = ["TokenEntropyCoder"]


class TokenEntropyCoder(nn.Module):
    """Quantise and code token sets of fixed shape (N, C); one bytes string per sample."""

    def __init__(self, num_tokens: int, channels: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.channels = channels
        self.bottleneck = EntropyBottleneck(num_tokens * channels)
        # The CDF tables are derived from the parameters by update(): keep them out of the state
        # dict so weights files load into a fresh model (whose tables are empty) and are rebuilt.
        self.bottleneck._non_persistent_buffers_set.update({"_quantized_cdf", "_offset", "_cdf_length"})

    def _flat(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 3 or tuple(tokens.shape[1:]) != (self.num_tokens, self.channels):
            raise ValueError(f"tokens of shape {tuple(tokens.shape)}, coder expects (B, {self.num_tokens}, {self.channels})")
        return tokens.reshape(tokens.shape[0], -1, 1)  # (B, N*C, 1): tokens as EB channels

    def forward(self, tokens: Tensor, training: bool | None = None) -> tuple[Tensor, Tensor]:
        """``tokens`` (B, N, C) -> (quantised tokens, likelihoods), both (B, N, C).

        ``training`` True: additive uniform noise (the rate proxy); False: rounding around the
        learned medians, exactly what :meth:`compress` / :meth:`decompress` produce.
        """
        flat = self._flat(tokens)
        quantised, likelihoods = self.bottleneck(flat, training=training)
        return quantised.view_as(tokens), likelihoods.view_as(tokens)

    def quantize_ste(self, tokens: Tensor) -> Tensor:
        """Rounded tokens (as :meth:`decompress` gives) with a straight-through gradient."""
        medians = self.bottleneck._get_medians().detach().reshape(1, self.num_tokens, self.channels)
        rounded = torch.round(tokens - medians) + medians
        return tokens + (rounded - tokens).detach()

    @property
    def is_ready(self) -> bool:
        return self.bottleneck._quantized_cdf.numel() > 0

    def update(self, force: bool = False) -> bool:
        """Build the CDF tables; must run before :meth:`compress` / :meth:`decompress`."""
        return self.bottleneck.update(force=force)

    def aux_loss(self) -> Tensor:
        return self.bottleneck.loss()

    def _check_ready(self) -> None:
        require_ready(self.bottleneck, "hypernerv weight tokens")

    def compress(self, tokens: Tensor) -> list[bytes]:
        """(B, N, C) -> B rANS strings."""
        self._check_ready()
        return list(self.bottleneck.compress(self._flat(tokens)))

    def decompress(self, strings: list[bytes]) -> Tensor:
        """B rANS strings -> quantised tokens (B, N, C). A malformed string raises ``BitstreamError``."""
        self._check_ready()
        try:
            flat = self.bottleneck.decompress(list(strings), (1,))  # (B, N*C, 1)
        except Exception as exc:  # the rANS extension raises assorted types on garbage
            raise BitstreamError(f"token entropy decoding failed: {exc}") from None
        if not torch.isfinite(flat).all():
            raise BitstreamError("token entropy decoding produced non-finite values")
        return flat.view(len(strings), self.num_tokens, self.channels)
