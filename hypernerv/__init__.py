"""Hypernerv: a transformer hypernetwork emits weight tokens that modulate a batched NeRV decoder."""

from nvcodec.hypernerv.decoder import DecoderConfig, LayerSpec, NervDecoder
from nvcodec.hypernerv.hypernet import HypernetConfig, HyperNetwork, TokenDecoder
from nvcodec.hypernerv.model import CompressedClip, HyperNerv, HyperNervConfig, HyperNervOutput, RDLoss

__all__ = [
    "HyperNervConfig",
    "HyperNerv",
    "HyperNervOutput",
    "RDLoss",
    "CompressedClip",
    "DecoderConfig",
    "LayerSpec",
    "NervDecoder",
    "HypernetConfig",
    "HyperNetwork",
    "TokenDecoder",
]
