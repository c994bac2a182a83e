"""CUDA: streams made on the GPU decode bit-exactly there and are refused on the CPU (skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nvcodec
from conftest import moving_clip
from nvcodec.container import CODEC_NAMES
from nvcodec.errors import BitstreamError

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("codec", CODEC_NAMES)
def test_cuda_stream_decodes_bit_exactly_on_cuda_and_is_refused_on_cpu(codec: str) -> None:
    frames = moving_clip(frames=3, height=40, width=56)
    data = nvcodec.encode(frames, codec=codec, model=f"{codec}-tiny", quality=1, device="cuda")
    assert nvcodec.info(data).made_on == "cuda"
    first = nvcodec.decode(data, device="cuda")
    assert first.shape == frames.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(nvcodec.decode(data, frames=slice(1, 3), device="cuda"), first[1:3])
    with pytest.raises(BitstreamError, match="encoded on cuda"):
        nvcodec.decode(data, device="cpu")
