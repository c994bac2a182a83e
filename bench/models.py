"""Which nvcodec model a speed or scaling benchmark runs: the shipped one, else the untrained test config."""

from __future__ import annotations

from collections.abc import Sequence

from nvcodec.container import CODEC_NAMES
from nvcodec.errors import InputError

__all__ = ["NVCODEC_CODECS", "model_for", "synthetic_clip"]

NVCODEC_CODECS = CODEC_NAMES  # nvcodec's own codecs (the rest are classical anchors)


def model_for(codec: str, overrides: Sequence[str] = ()) -> str:
    """The model to time for ``codec``: one named in ``overrides``, else the shipped default when its
    weights are installed, else the codec's untrained test config (speed does not depend on training,
    so timings of an untrained model of the *same* config are still the config's timings; the tiny
    config's are not, and results name the model they ran)."""
    from nvcodec import registry

    for name in overrides:
        if registry.get_spec(name).codec == codec:
            return name
    default = registry.get_spec(registry.default_model(codec))
    if default.has_weights:
        return default.name
    untrained = [spec.name for spec in registry.list_models(codec) if not spec.weights_file]
    if not untrained:
        raise InputError(f"{codec}: shipped weights {default.weights_file} missing and no untrained config registered")
    return untrained[0]


def synthetic_clip(frames: int, height: int, width: int, seed: int = 0):
    """A deterministic clip (T, H, W, 3) uint8 with smooth texture, global motion and mild noise.

    Content for speed measurements only (classical encoders' speed depends a little on content).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    clip = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        shift_x, shift_y = 1.5 * t, 0.75 * t  # a slow camera pan
        u, v = (xx + shift_x) / 23.0, (yy + shift_y) / 17.0
        frame = np.stack(
            [128 + 80 * np.sin(u) * np.cos(v), 128 + 60 * np.sin(0.7 * u + 1.3 * v), 128 + 70 * np.cos(0.5 * u - v)], axis=-1
        )
        frame += rng.normal(0.0, 3.0, frame.shape)
        clip[t] = np.clip(np.round(frame), 0, 255).astype(np.uint8)
    return clip
