"""Learned intra codec: Hadamard window-attention transforms, frequency-disentangled latent, variable rate."""

from nvcodec.codec.model import IntraCodec, IntraCompressed, IntraConfig, IntraEncoded, RDOutput

__all__ = ["IntraConfig", "IntraCodec", "IntraCompressed", "IntraEncoded", "RDOutput"]
