"""Speed suite: encode, decode, entropy coding and the networks' forward passes, grouped by stage.

Groups: ``encode`` and ``decode`` (the whole API path, uint8 frames <-> .nvc bytes, with x264/x265
alongside for scale), ``entropy-encode`` / ``entropy-decode`` (rANS coding with its entropy model:
intra's hyperprior + channel-slice coder, hypernerv's token coder), ``forward`` (intra's analysis
transform, hypernerv's hypernetwork: clip -> weight tokens). Shapes are in ``extra_info``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nvcodec.container import CODEC_NAMES

NVCODEC = CODEC_NAMES
CLASSICAL = ("x264", "x265")


def _adapter(codec: str, settings) -> Any:
    """The loaded codec adapter (weights, entropy tables ready) for the model the suite times."""
    from nvcodec import registry
    from nvcodec.bench.models import model_for

    name = model_for(codec, settings.models)
    spec = registry.get_spec(name)
    return registry.load_codec(name, settings.device, allow_untrained=not spec.weights_file)


@pytest.mark.parametrize("codec", NVCODEC + CLASSICAL)
def test_encode(codec: str, run, settings, clip: np.ndarray) -> None:
    import nvcodec
    from nvcodec.bench import classical

    if codec in NVCODEC:
        adapter = _adapter(codec, settings)
        quality = adapter.default_quality
        stream = run(lambda: nvcodec.encode(clip, codec=codec, quality=quality, model=adapter.model_name, device=settings.device),
                     "encode", codec=codec, model=adapter.model_name, quality=quality)
        size = len(stream)
    else:
        crf = 28
        stream = run(lambda: classical.encode(clip, codec, crf), "encode", codec=codec, model=classical.CODECS[codec].library, crf=crf)
        size = stream.num_bytes
    assert size > 0


@pytest.mark.parametrize("codec", NVCODEC + CLASSICAL)
def test_decode(codec: str, run, settings, clip: np.ndarray) -> None:
    import nvcodec
    from nvcodec.bench import classical

    if codec in NVCODEC:
        adapter = _adapter(codec, settings)
        quality = adapter.default_quality
        stream = nvcodec.encode(clip, codec=codec, quality=quality, model=adapter.model_name, device=settings.device)
        frames = run(lambda: nvcodec.decode(stream, device=settings.device), "decode",
                     codec=codec, model=adapter.model_name, quality=quality, bytes=len(stream))
    else:
        coded = classical.encode(clip, codec, 28)
        frames = run(lambda: classical.decode(coded), "decode", codec=codec, model=classical.CODECS[codec].library,
                     crf=28, bytes=coded.num_bytes)
    assert frames.shape == clip.shape


def _intra_latent(settings, clip: np.ndarray):
    """intra's model and its latent y of the first frame: (1, M, H/16, W/16), quality gain not applied."""
    import torch

    from nvcodec.geometry import frames_to_tensor, pad_to_multiple

    model = _adapter("intra", settings).model
    x = frames_to_tensor(clip[0], settings.device)[None]  # (1, 3, H, W)
    x = pad_to_multiple(x, model.config.pad_multiple)
    with torch.inference_mode():
        y = model.analysis(x)
    return model, x, y


def _hypernerv_tiles(settings, clip: np.ndarray):
    """hypernerv's model and the first clip cut into tiles: (B, T, 3, tile, tile)."""
    from nvcodec.geometry import TileGrid, frames_to_tensor

    model = _adapter("hypernerv", settings).model
    tile, clip_len = model.config.tile_size, model.config.clip_len
    frames = frames_to_tensor(clip[:clip_len])  # (n, 3, H, W)
    tiles = TileGrid(frames.shape[-2], frames.shape[-1], tile, tile).split(frames)  # (B, n, 3, t, t), as the codec cuts them
    return model, model.pad_clip(tiles.to(settings.device))


@pytest.mark.parametrize("codec", NVCODEC)
def test_forward(codec: str, run, settings, clip: np.ndarray) -> None:
    import torch

    if codec == "intra":
        model, x, _ = _intra_latent(settings, clip)
        with torch.inference_mode():
            y = run(lambda: model.analysis(x), "forward", codec=codec, network="analysis transform g_a", input_shape=list(x.shape))
        assert y.shape[1] == model.config.latent_channels
    else:
        model, tiles = _hypernerv_tiles(settings, clip)
        with torch.inference_mode():
            codes = run(lambda: model.hypernet(tiles), "forward", codec=codec, network="hypernetwork", input_shape=list(tiles.shape))
        assert codes.shape[:2] == (tiles.shape[0], model.num_weight_tokens)


@pytest.mark.parametrize("direction", ("encode", "decode"))
@pytest.mark.parametrize("codec", NVCODEC)
def test_entropy(codec: str, direction: str, run, settings, clip: np.ndarray) -> None:
    import torch

    group = f"entropy-{direction}"
    with torch.inference_mode():
        if codec == "intra":
            model, _, y = _intra_latent(settings, clip)

            def encode() -> tuple[list[bytes], list[bytes]]:
                z_strings, hyper = model.hyperprior.compress(y)
                y_strings, _ = model.slice_coder.compress(y, hyper.mean_support, hyper.scale_support)
                return z_strings, y_strings

            z_strings, y_strings = encode()
            extra = dict(codec=codec, coder="hyperprior + channel-slice coder", latent_shape=list(y.shape),
                         bytes=len(z_strings[0]) + len(y_strings[0]))
            if direction == "encode":
                run(encode, group, **extra)
            else:
                latent_hw = tuple(y.shape[-2:])

                def decode() -> torch.Tensor:
                    hyper = model.hyperprior.decompress(z_strings, (latent_hw[0] // 4, latent_hw[1] // 4))
                    return model.slice_coder.decompress(y_strings, hyper.mean_support, hyper.scale_support)

                y_hat = run(decode, group, **extra)
                assert y_hat.shape == y.shape
        else:
            model, tiles = _hypernerv_tiles(settings, clip)
            level = model.config.quality_levels // 2
            levels = torch.full((tiles.shape[0],), level, dtype=torch.long, device=tiles.device)
            scaled = model.hypernet(tiles) * model.gains(levels)  # (B, N_w, C)
            strings = model.token_coder.compress(scaled, level)
            extra = dict(codec=codec, coder="token coder", tokens_shape=list(scaled.shape), bytes=sum(map(len, strings)))
            if direction == "encode":
                run(lambda: model.token_coder.compress(scaled, level), group, **extra)
            else:
                decoded = run(lambda: model.token_coder.decompress(strings, level), group, **extra)
                assert decoded.shape == scaled.shape
