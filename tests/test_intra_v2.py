"""intra v2 pieces: fine-tuning from shipped float16 weights, finite checks, encode-time refinement,
training data split and downscaling, the compressai reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvcodec.codec.model import IntraCodec
from nvcodec.codec.reference import GainedMeanScaleHyperprior, ReferenceConfig
from nvcodec.codec.video import CHUNK_FRAMING
from nvcodec.errors import InputError
from nvcodec.geometry import frames_to_tensor
from nvcodec.registry import create_model, get_spec, load_codec, load_weights, restore_constants, save_weights
from tests.conftest import moving_clip


def _tiny() -> IntraCodec:
    """A fresh (not the registry's cached) untrained intra-tiny, ready to code."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model("intra-tiny")
    model.update_entropy_models()
    return model.eval()


def test_fine_tuning_from_shipped_float16_weights_has_finite_loss() -> None:
    spec = get_spec("intra-small")
    if not spec.has_weights:
        pytest.skip("intra-small weights not shipped")
    shipped, _ = load_weights(spec.weights_path)
    fresh = create_model("intra-small")
    fresh.load_state_dict(restore_constants(fresh, shipped.state_dict()))
    for key, value in fresh.state_dict().items():  # learned tensors come from the file ...
        if not (key.endswith("pedestal") or key.endswith(".bound")):
            assert torch.equal(value, shipped.state_dict()[key]), key
    floor = fresh.state_dict()["hyperprior.entropy_bottleneck.likelihood_lower_bound.bound"]
    assert float(floor) > 0  # ... the constants from the architecture (the file's float16 copy is 0)
    fresh.train()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = fresh(torch.zeros_like(x), 0)  # a flat image: likelihoods near 1 and near the floor both occur
    loss = out.bits() + torch.mean((out.x_hat - x) ** 2)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in fresh.parameters() if p.grad is not None)


def test_bf16_autocast_trains_the_transforms_and_keeps_rates_float32() -> None:
    """``precision: bf16-mixed`` + ``channels_last``: the transforms and the entropy-parameter networks
    (h_a, h_s, the slices' nets) run in bfloat16, y, the likelihoods and the entropy models' own rates in
    float32, and the rate matches the float32 forward closely."""
    from nvcodec.train.image import IntraSystem

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        system = IntraSystem(model_name="intra-tiny", channels_last=True)
    model = system.model.train()
    assert model.g_a[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=torch.channels_last)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        reference = model(x, 1)
    dtypes: dict[str, set[torch.dtype]] = {"entropy parameters": set(), "transforms": set(), "rates": set()}

    def record(part: str):
        return lambda module, inputs, output: dtypes[part].update(t.dtype for t in (output if isinstance(output, tuple) else (output,)))

    hooks = [
        m.register_forward_hook(record("entropy parameters" if name.startswith(("hyperprior", "slice_coder")) else "transforms"))
        for name, m in model.named_modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    ]
    hooks += [m.register_forward_hook(record("rates")) for m in (model.hyperprior.entropy_bottleneck, model.slice_coder.gaussian_conditional)]
    with torch.random.fork_rng(devices=[]), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(2)
        mixed = model(x, 1)
        aux = model.aux_loss()
    for hook in hooks:
        hook.remove()
    assert dtypes == {"entropy parameters": {torch.bfloat16}, "transforms": {torch.bfloat16}, "rates": {torch.float32}}
    assert all(t.dtype == torch.float32 for t in (*mixed.likelihoods, aux))
    assert abs(float(mixed.bits().detach()) / float(reference.bits().detach()) - 1.0) < 0.02
    loss = mixed.bits() / x[:, 0].numel() + torch.mean((mixed.x_hat.float() - x) ** 2)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_saved_weights_keep_buffers_in_float32(tmp_path) -> None:
    from safetensors import safe_open

    model = create_model("intra-small")  # registered with float16 storage
    path = tmp_path / "t.safetensors"
    save_weights(model, "intra-small", path)
    params = {name for name, _ in model.named_parameters()}
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            tensor = handle.get_tensor(key)
            if tensor.is_floating_point():
                assert tensor.dtype == (torch.float16 if key in params else torch.float32), key
    reloaded, _ = load_weights(path)
    floor = reloaded.state_dict()["slice_coder.gaussian_conditional.likelihood_lower_bound.bound"]
    assert float(floor) == pytest.approx(1e-9)


def test_non_finite_image_is_refused() -> None:
    x = torch.zeros(1, 3, 32, 32)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="non-finite"):
        _tiny().encode(x, 0)


def test_non_finite_latents_stop_before_entropy_coding() -> None:
    model = _tiny()
    with torch.no_grad():
        model.g_a[0].weight.fill_(float("nan"))
    with pytest.raises(RuntimeError, match="non-finite latents"):
        model.encode(torch.rand(1, 3, 32, 32), 0)


def test_refinement_keeps_the_cheaper_stream_and_decodes_exactly() -> None:
    codec = load_codec("intra-tiny", allow_untrained=True)
    frame = moving_clip(frames=1, height=48, width=64)
    model = codec.model
    x = frames_to_tensor(frame[0])[None]
    plain = model.encode(x, 2)
    refined = model.encode(x, 2, refine_steps=4)
    assert model._rd_cost(x, refined) <= model._rd_cost(x, plain)
    again = model.encode(x, 2, refine_steps=4)
    assert again.compressed == refined.compressed  # deterministic
    encoded = codec.encode(frame, 2, refine_steps=4)
    decoded = codec.decode_chunk(encoded.params, encoded.chunks[0], 48, 64)
    assert np.array_equal(decoded, encoded.reconstruction)


def test_refinement_leaves_the_callers_random_state_and_weights_alone() -> None:
    model = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    model.encode(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)), 1, refine_steps=2)
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


def test_area_downscale_and_validation_exclusion(tmp_path) -> None:
    from PIL import Image

    from nvcodec.train.data import area_downscale, load_sources

    image = np.arange(9 * 12 * 3, dtype=np.uint8).reshape(9, 12, 3)
    assert area_downscale(image, 12) is image
    small = area_downscale(image, 5)  # factor 3: 12 / 3 = 4 <= 5 (factor 2 gives 6 > 5)
    assert small.shape == (3, 4, 3)
    assert small[0, 0, 0] == np.round(image[:3, :3, 0].astype(float).mean())
    assert area_downscale(image, 11).shape == (4, 6, 3)  # at least 2x, never a fractional resize
    for name in ("keep.png", "val.png"):
        Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(tmp_path / name)
    images, frames = load_sources([str(tmp_path)], exclude=["val.png"])
    assert len(images) == 1 and not frames
    with pytest.raises(InputError):
        load_sources([str(tmp_path)], exclude=["keep.png", "val.png"])


def test_reference_codes_real_bytes() -> None:
    torch.manual_seed(0)
    model = GainedMeanScaleHyperprior(ReferenceConfig(channels=16, latent_channels=24)).eval()
    model.update_entropy_models()
    x = torch.rand(1, 3, 64, 64)
    out = model(x, 1)
    assert out.x_hat.shape == x.shape and out.y_likelihoods.shape[1] == 24
    low, high = model.compress(x, 0), model.compress(x, 5)
    assert low.num_bytes == len(low.y_string) + len(low.z_string) + CHUNK_FRAMING
    assert model.decompress(high).shape == x.shape


def test_reference_rd_points_count_the_bytes_of_an_intra_file_of_the_same_image() -> None:
    """``intra_eval --reference-checkpoint``: the reference's strings framed as an intra chunk in a one-frame
    ``.nvc`` file, so that its rate counts what intra's does (``stream_bytes`` of an intra-small encode),
    and its PSNR is that of what decodes from the strings."""
    from dataclasses import replace

    from nvcodec.bench.intra_eval import reference_points, stream_bytes
    from nvcodec.codec.video import pack_chunk, unpack_chunk
    from nvcodec.geometry import crop_to, tensor_to_frames
    from nvcodec.interface import ChunkData
    from nvcodec.metrics import psnr_rgb

    if not get_spec("intra-small").has_weights:
        pytest.skip("intra-small weights not shipped")
    torch.manual_seed(0)
    model = GainedMeanScaleHyperprior(ReferenceConfig(channels=16, latent_channels=24)).eval()
    model.update_entropy_models()
    image = moving_clip(1, 40, 56)[0]
    points = reference_points(model, "clip", image)
    assert [p.setting for p in points] == list(range(model.config.quality_levels))
    padded = torch.nn.functional.pad(frames_to_tensor(image)[None], (0, 8, 0, 24), mode="replicate")  # to 64 x 64
    codec = load_codec("intra-small")
    for point in points:
        ref = model.compress(padded, point.setting)
        decoded = tensor_to_frames(crop_to(model.decompress(ref), 40, 56)[0])
        assert point.psnr_rgb == psnr_rgb(image, decoded)
        encoded = codec.encode(image[None], point.setting)  # an intra-small file of the image: its header, framing
        stream = codec.stream_params(encoded.params, 40, 56)
        intra_chunk = encoded.chunks[0].payload
        assert len(intra_chunk) == codec.model.compress(padded, point.setting).num_bytes + CHUNK_FRAMING
        ours = replace(unpack_chunk(intra_chunk, stream), y_string=ref.y_string, z_string=ref.z_string)
        chunk = pack_chunk(ours)  # the reference's strings in intra's chunk: it parses as one, at ref.num_bytes
        assert unpack_chunk(chunk, stream) == ours and len(chunk) == ref.num_bytes
        assert point.num_bytes == stream_bytes(codec, image, replace(encoded, chunks=[ChunkData(0, 1, chunk)]))
        assert point.bpp == 8.0 * point.num_bytes / (40 * 56)


def test_reference_checkpoints_read_only_as_the_reference(tmp_path) -> None:
    from nvcodec.checkpoints import load_checkpoint, load_reference_checkpoint

    torch.manual_seed(0)
    model = GainedMeanScaleHyperprior(ReferenceConfig(channels=16, latent_channels=24))
    hparams = {"reference": True, "model_name": "intra-small", "model_overrides": {"channels": 16, "latent_channels": 24}}
    path = tmp_path / "reference.ckpt"
    torch.save({"hyper_parameters": hparams, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    loaded = load_reference_checkpoint(path)
    assert isinstance(loaded, GainedMeanScaleHyperprior) and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    with pytest.raises(InputError, match="diagnosis reference"):
        load_checkpoint(path, codec="intra")
    torch.save({"hyper_parameters": {**hparams, "reference": False}, "state_dict": {}}, path)
    with pytest.raises(InputError, match="did not train the diagnosis reference"):
        load_reference_checkpoint(path)
    with pytest.raises(InputError, match="not found"):
        load_reference_checkpoint(tmp_path / "missing.ckpt")
