"""Model registry: every registered model builds; weights round-trip with metadata, sha256 and dtype."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import nvcodec
from nvcodec import registry
from nvcodec.container import CODEC_NAMES
from nvcodec.entropy import RANS_TABLES
from nvcodec.errors import BitstreamError, ModelConfigError, UnknownModelError


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_every_model_builds_with_its_overrides_applied(name: str) -> None:
    """Each override the registry table states for a name is in the built model's config (none ignored)."""
    spec = registry.get_spec(name)
    model = registry.create_model(name)
    built = _flat(dataclasses.asdict(model.config))
    overrides = _flat(dict(spec.config_overrides))
    for key, value in overrides.items():
        assert built[key] == value, key
    defaults = _flat(dataclasses.asdict(type(model.config)()))
    assert {key for key in built if built[key] != defaults[key]} == set(overrides) - {k for k in overrides if overrides[k] == defaults[k]}


SHIPPED = [spec.name for spec in registry.list_models() if spec.weights_file]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_are_the_registered_config_and_load_strictly(name: str) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    spec = registry.get_spec(name)
    assert spec.has_weights, spec.weights_path
    with safe_open(str(spec.weights_path), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["model"] == name and metadata["codec"] == spec.codec
    raw = json.loads(metadata["config"])
    config_cls = type(registry.create_config(name))
    upgrade = getattr(config_cls, "upgrade_dict", lambda raw: raw)
    stored = registry.config_from_dict(config_cls(), upgrade(raw))
    assert registry.create_config(name) == stored
    model = registry.create_model(name)
    stored_state = load_file(str(spec.weights_path))
    model.load_state_dict(stored_state, strict=True)  # raises on any missing/extra key
    tables = [k for k in stored_state if k.rpartition(".")[2] in RANS_TABLES]
    assert all(stored_state[k].numel() == 0 for k in tables), "rANS tables belong in the .tables file only"
    loaded, loaded_name = registry.load_weights(spec.weights_path, name)
    assert loaded_name == name and loaded.config == stored


def _rewrite_config(path, edit) -> None:
    """Rewrite a weights file's metadata config with ``edit(dict) -> dict``; tensors unchanged."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
    metadata["config"] = json.dumps(edit(json.loads(metadata["config"])))
    save_file(load_file(str(path)), str(path), metadata=metadata)


def test_load_weights_refuses_a_config_that_differs_from_the_name(tmp_path) -> None:
    path = tmp_path / "w.safetensors"
    registry.save_weights(registry.create_model("intra-tiny"), "intra-tiny", path)
    _rewrite_config(path, lambda c: {**c, "window_size": 4, "head_dim": 8})
    with pytest.raises(ModelConfigError, match=r"intra-tiny.*head_dim: 8 != 16; window_size: 4 != 8"):
        registry.load_weights(path)
    _rewrite_config(path, lambda c: {**c, "no_such_field": 1})
    with pytest.raises(ModelConfigError, match="no_such_field"):
        registry.load_weights(path)
    with pytest.raises(ModelConfigError, match="channels: 32 != 16"):
        registry.save_weights(registry.create_model("intra-tiny", channels=32), "intra-tiny", path)


def test_flat_hypernerv_metadata_of_old_files_converts_once(tmp_path) -> None:
    """The pre-nesting metadata form (as in the shipped hypernerv-small file) reads as the nested config."""
    config = registry.create_config("hypernerv-tiny")
    flat = {**dataclasses.asdict(config.decoder), **dataclasses.asdict(config.hypernet), "lambdas": list(config.lambdas)}
    del flat["tile_size"]
    path = tmp_path / "w.safetensors"
    registry.save_weights(registry.create_model("hypernerv-tiny"), "hypernerv-tiny", path)
    _rewrite_config(path, lambda c: {**flat, "tiny": False, "rgb_skips": False})
    loaded, _ = registry.load_weights(path)
    assert loaded.config == config
    _rewrite_config(path, lambda c: {**flat, "tiny": False, "rgb_skips": True})
    with pytest.raises(ModelConfigError, match="rgb_skips"):
        registry.load_weights(path)


def test_list_and_lookup() -> None:
    assert {s.codec for s in registry.list_models()} == set(CODEC_NAMES)  # every codec has a model, no other
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


def test_updated_entropy_tables_are_not_stored_in_the_weights_file(tmp_path) -> None:
    from safetensors.torch import load_file

    model = registry.create_model("intra-tiny").eval()
    model.update_entropy_models()  # e.g. a retune tool that coded with the model before saving it
    tables = [k for k in model.state_dict() if k.rpartition(".")[2] in RANS_TABLES]
    assert tables and all(model.state_dict()[k].numel() > 0 for k in tables)
    path = tmp_path / "w.safetensors"
    registry.save_weights(model, "intra-tiny", path)
    stored = load_file(str(path))
    assert all(stored[k].numel() == 0 for k in tables)
    loaded, _ = registry.load_weights(path, "intra-tiny")
    for key, value in model.state_dict().items():
        if key not in tables:
            assert torch.equal(loaded.state_dict()[key], value), key


def test_half_precision_storage_loads_as_rounded_float32(tmp_path, monkeypatch) -> None:
    import dataclasses

    spec = dataclasses.replace(registry.get_spec("intra-tiny"), storage_dtype="float16")
    monkeypatch.setitem(registry.MODELS, "intra-tiny", spec)
    model = registry.create_model("intra-tiny")
    path = tmp_path / "half.safetensors"
    registry.save_weights(model, "intra-tiny", path)
    loaded, _ = registry.load_weights(path)
    learned = {name for name, _ in model.named_parameters()}  # buffers (CDF tables, floors) stay float32
    assert learned and len(learned) < len(model.state_dict())
    for key, value in model.state_dict().items():
        expected = value.half().float() if value.is_floating_point() and key in learned else value
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


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_codecs_code_with_the_exported_entropy_tables(name: str) -> None:
    """``load_codec`` installs ``NAME.tables.safetensors`` (listed in the manifest) instead of rebuilding
    the tables, which on another CPU can differ and desynchronise the rANS decoder."""
    from safetensors.torch import load_file

    from nvcodec.entropy import entropy_tables

    spec = registry.get_spec(name)
    assert registry.read_manifest()[spec.tables_path.name] == registry.sha256_file(spec.tables_path)
    stored = load_file(str(spec.tables_path))
    installed = entropy_tables(registry.load_codec(name).model)
    assert sorted(installed) == sorted(stored) and all(torch.equal(installed[k], stored[k]) for k in stored)


def test_entropy_tables_install_into_a_fresh_model_and_code_the_same_bytes(tmp_path, monkeypatch) -> None:
    """Tables saved beside a weights file are what ``load_codec`` codes with; a file that does not match
    the manifest, or that lacks a table, is refused."""
    import dataclasses

    import numpy as np

    from nvcodec.entropy import entropy_tables, install_entropy_tables

    model = registry.create_model("intra-tiny").eval()
    model.update_entropy_models()
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    spec = dataclasses.replace(registry.get_spec("intra-tiny"), weights_file="tiny.safetensors")
    monkeypatch.setitem(registry.MODELS, "intra-tiny", spec)
    monkeypatch.setattr(registry.ModelSpec, "weights_path", property(lambda s: tmp_path / s.weights_file if s.weights_file else None))
    digest = registry.save_weights(model, "intra-tiny", tmp_path / "tiny.safetensors")
    tables_digest = registry.save_entropy_tables(model, spec.tables_path)
    assert spec.tables_path.name == "tiny.tables.safetensors"
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"tiny.safetensors": digest, spec.tables_path.name: tables_digest}))
    registry._checked_sha256.cache_clear()
    registry.load_codec.cache_clear()
    try:
        codec = registry.load_codec("intra-tiny")
        tables = entropy_tables(model)
        assert all(torch.equal(v, entropy_tables(codec.model)[k]) for k, v in tables.items())
        frames = np.random.default_rng(0).integers(0, 256, (1, 32, 48, 3), dtype=np.uint8)
        stream = nvcodec.encode(frames, codec="intra", model="intra-tiny", quality=1)
        assert nvcodec.info(stream).weights == digest[:16]
        rebuilt = registry.create_model("intra-tiny").eval()  # the same weights, tables rebuilt here
        rebuilt.load_state_dict(model.state_dict())
        rebuilt.update_entropy_models()
        assert nvcodec.decode(stream).shape == frames.shape
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        assert codec.model.compress(x, 1) == rebuilt.compress(x, 1)  # this machine rebuilds the same tables
        with pytest.raises(ValueError, match="scale_table"):
            install_entropy_tables(codec.model, {k: v for k, v in tables.items() if not k.endswith("scale_table")})
        (tmp_path / "MANIFEST.json").write_text(json.dumps({"tiny.safetensors": digest, spec.tables_path.name: "f" * 64}))
        registry._checked_sha256.cache_clear()
        registry.load_codec.cache_clear()
        with pytest.raises(UnknownModelError, match="manifest"):
            registry.load_codec("intra-tiny")
    finally:
        registry._checked_sha256.cache_clear()
        registry.load_codec.cache_clear()


def test_untrained_codec_is_seeded_without_touching_the_callers_generator() -> None:
    registry.load_codec.cache_clear()
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    first = registry.load_codec("intra-tiny", allow_untrained=True)
    assert torch.equal(torch.rand(4), expected)  # the global generator continues where it was
    registry.load_codec.cache_clear()
    torch.rand(7)  # another global state: the untrained weights do not depend on it
    second = registry.load_codec("intra-tiny", allow_untrained=True)
    assert first is not second
    for key, value in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[key], value), key
