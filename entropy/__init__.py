"""Entropy models and coding: mean-scale hyperprior, channel-wise slice coding with LRP, rANS bridge."""

from nvcodec.entropy.hyperprior import HyperPrior, HyperPriorOutput
from nvcodec.entropy.rans import (
    RANS_TABLES,
    entropy_tables,
    install_entropy_tables,
    pack_strings,
    require_ready,
    split_aux_parameters,
    unpack_strings,
)
from nvcodec.entropy.slices import SliceCoder, SliceOutput, quantize_param

__all__ = [
    "HyperPrior",
    "HyperPriorOutput",
    "SliceCoder",
    "SliceOutput",
    "quantize_param",
    "pack_strings",
    "unpack_strings",
    "require_ready",
    "RANS_TABLES",
    "entropy_tables",
    "install_entropy_tables",
    "split_aux_parameters",
]
