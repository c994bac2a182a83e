"""Model registry: every registered model builds; weights round-trip with metadata, sha256 and dtype."""

from __future__ import annotations

import json

import pytest
import torch

from nvcodec import registry
from nvcodec.errors import BitstreamError, UnknownModelError


@pytest.mark.parametrize("name", [spec.name for spec in registry.list_models() if spec.name.endswith("-tiny")])
def test_tiny_models_build_with_their_config(name: str) -> None:
    model = registry.create_model(name)
    assert model.config == registry.create_config(name)
    assert hasattr(model, "update_entropy_models")


def test_list_and_lookup() -> None:
    assert {s.codec for s in registry.list_models()} == {"intra", "hypernerv"}
    assert all(s.codec == "intra" for s in registry.list_models("intra"))
    with pytest.raises(UnknownModelError, match="no-such-model"):
        registry.get_spec("no-such-model")
    with pytest.raises(UnknownModelError, match="audio"):
        registry.default_model("audio")


def test_weights_round_trip_with_metadata(tmp_path) -> None:
    model = registry.create_model("intra-tiny")
    path = tmp_path / "w.safetensors"
    digest = registry.save_weights(model, "intra-tiny", path)
    assert digest == registry.sha256_file(path)
    loaded, name = registry.load_weights(path)
    assert name == "intra-tiny" and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(UnknownModelError, match="hypernerv-tiny"):
        registry.load_weights(path, name="hypernerv-tiny")


def test_half_precision_storage_loads_as_rounded_float32(tmp_path, monkeypatch) -> None:
    import dataclasses

    spec = dataclasses.replace(registry.get_spec("intra-tiny"), storage_dtype="float16")
    monkeypatch.setitem(registry.MODELS, "intra-tiny", spec)
    model = registry.create_model("intra-tiny")
    path = tmp_path / "half.safetensors"
    registry.save_weights(model, "intra-tiny", path)
    loaded, _ = registry.load_weights(path)
    for key, value in model.state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        assert loaded.state_dict()[key].dtype == value.dtype
        assert torch.equal(loaded.state_dict()[key], expected), key


def test_tampered_weights_are_refused(tmp_path, monkeypatch) -> None:
    import dataclasses

    model = registry.create_model("intra-tiny")
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    spec = dataclasses.replace(registry.get_spec("intra-tiny"), weights_file="tiny.safetensors")
    monkeypatch.setitem(registry.MODELS, "intra-tiny", spec)
    monkeypatch.setattr(registry.ModelSpec, "weights_path", property(lambda s: tmp_path / s.weights_file if s.weights_file else None))
    digest = registry.save_weights(model, "intra-tiny", tmp_path / "tiny.safetensors")
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"tiny.safetensors": digest}))
    registry._checked_sha256.cache_clear()
    assert registry.weights_fingerprint("intra-tiny") == digest[:16]
    registry.check_fingerprint("intra-tiny", digest[:16])
    with pytest.raises(BitstreamError, match="weights"):
        registry.check_fingerprint("intra-tiny", "0" * 16)
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"tiny.safetensors": "f" * 64}))
    registry._checked_sha256.cache_clear()
    with pytest.raises(UnknownModelError, match="manifest"):
        registry.weights_fingerprint("intra-tiny")
    registry._checked_sha256.cache_clear()
