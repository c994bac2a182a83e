"""Model registry: stable names -> frozen configs, ``create_model`` / ``list_models``, shipped weights.

Weights are safetensors files in ``nvcodec/weights/`` whose metadata holds the format version, the
model name and the config (JSON); ``MANIFEST.json`` beside them lists each file's sha256. A stream
records the first 16 hex digits of that sha256 (the *fingerprint*) so that a decoder refuses a
stream made with other weights. Beside each weights file, ``NAME.tables.safetensors`` (also in the
manifest) holds the model's rANS tables as they were computed once, at export: a decoder uses them
instead of rebuilding them, because rebuilt tables can differ between CPUs and a stream would then
decode to garbage on another machine (``nvcodec.entropy.rans``). Nothing here downloads anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from nvcodec.errors import BitstreamError, ModelConfigError, UnknownModelError

__all__ = [
    "restore_constants",
    "initial_weights",
    "ModelSpec",
    "MODELS",
    "WEIGHTS_DIR",
    "WEIGHTS_FORMAT_VERSION",
    "get_spec",
    "list_models",
    "create_config",
    "create_model",
    "config_from_dict",
    "save_weights",
    "save_entropy_tables",
    "load_weights",
    "load_codec",
    "weights_fingerprint",
    "default_model",
]

WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_FORMAT_VERSION = 1
FINGERPRINT_HEX = 16


@dataclass(frozen=True)
class ModelSpec:
    """One registered model. Dotted paths keep ``nvcodec models`` free of torch imports."""

    name: str  # stable kebab-case, e.g. "intra-tiny"
    codec: str  # "intra" | "hypernerv"
    config_cls: str  # "module:Class" of the frozen config dataclass
    model_cls: str  # "module:Class" of the nn.Module, built as Class(config)
    adapter_cls: str  # "module:Class" of the VideoCodec adapter
    # How this name differs from the config class's defaults: field -> value, a sub-config field ->
    # a mapping of its own fields (applied by :func:`config_from_dict`). Never mutated.
    config_overrides: Mapping[str, Any] = field(default_factory=dict, hash=False)
    weights_file: str | None = None  # file name in WEIGHTS_DIR
    quality_levels: int = 0
    description: str = ""
    storage_dtype: str = "float32"  # "float16" halves the file; tensors load back as float32

    @property
    def weights_path(self) -> Path | None:
        return WEIGHTS_DIR / self.weights_file if self.weights_file else None

    @property
    def tables_path(self) -> Path | None:
        """``NAME.tables.safetensors`` beside the weights: the rANS tables computed at export."""
        return tables_path_for(self.weights_path) if self.weights_path else None

    @property
    def has_weights(self) -> bool:
        path = self.weights_path
        return path is not None and path.is_file()


def tables_path_for(weights: Path) -> Path:
    """The rANS tables file that belongs beside weights file ``weights``."""
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".tables.safetensors")


_INTRA = dict(
    codec="intra",
    config_cls="nvcodec.codec.model:IntraConfig",
    model_cls="nvcodec.codec.model:IntraCodec",
    adapter_cls="nvcodec.codec.video:IntraVideoCodec",
)
_HYPERNERV = dict(
    codec="hypernerv",
    config_cls="nvcodec.hypernerv.model:HyperNervConfig",
    model_cls="nvcodec.hypernerv.model:HyperNerv",
    adapter_cls="nvcodec.hypernerv.video:HyperNervVideoCodec",
)

# The registry table. Names are frozen once weights ship: renaming breaks existing streams.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="intra-small",
            weights_file="intra-small.safetensors",
            # Frequency ordering off since 2026-12-02: at equal fine-tuning it cost 34 % rate on the
            # validation split (issue #14, train/configs/intra-ablation-no-freq-ft.yaml).
            # The stride-16 bypass and a wider ladder since phase 10 (issue #14, train/configs/intra-small-phase10.yaml).
            # g_s detail units since phase 11 (issue #14, train/configs/intra-small-phase11.yaml).
            # Two residual units after g_s's stride-8 attention since phase 16b (train/configs/intra-small-phase16b.yaml).
            # Levels respaced by PSNR since 2026-12-07 (issue #14, tools/intra_retune_levels.py): gains interpolated
            # between the learned ones, lambdas likewise (they weigh --refine-steps and any further training);
            # phase 19 (train/configs/intra-small-phase19.yaml) trained at them and the tool placed them again;
            # phase 21 likewise (train/configs/intra-small-phase21.yaml), placed 1.1 dB of training-crop PSNR apart.
            config_overrides={"frequency_order": False, "bypass": True, "detail_units": True, "stride8_units": 2, "lambdas": (0.000606, 0.001175, 0.002523, 0.006328, 0.022843, 0.693338)},
            quality_levels=6,
            description="Hadamard window attention + four equal channel slices (ChARM + LRP), stride-16 bypass, variable rate",
            storage_dtype="float16",  # 4.3 M parameters: 8.7 MB in float16 (issue #14 allows up to 16 MB)
            **_INTRA,
        ),
        ModelSpec(
            name="intra-tiny",
            config_overrides={"channels": 16, "latent_channels": 32, "slice_sizes": (4, 4, 8, 16), "hyper_channels": 16},
            quality_levels=6,
            description="tiny untrained config for tests",
            **_INTRA,
        ),
        ModelSpec(
            name="hypernerv-small",
            weights_file="hypernerv-small.safetensors",
            # Levels retuned 2026-12-06 (issue #15, tools/hypernerv_retune_levels.py): one token density per
            # level and gains spaced by training-clip PSNR, so that the levels differ in PSNR, not only in rate.
            # Lambdas that agree with those levels since 2026-12-07 (issue #15, train/configs/hypernerv-small-lambdas.yaml):
            # they weigh encode-time refinement (and any further training) as the levels trade rate for PSNR.
            config_overrides={"level_entropy_models": True, "lambdas": (0.5, 2.0, 13.0, 60.0)},
            quality_levels=4,
            description="transformer hypernetwork -> fused NeRV weights, variable rate",
            **_HYPERNERV,
        ),
        ModelSpec(
            name="hypernerv-tiny",
            config_overrides={
                "decoder": {"pe_levels": 4, "stem_hidden": 16, "stem_hw": 4, "channels": (8, 8, 8), "stem_groups": 2, "conv_groups": 2},
                "hypernet": {"dim": 32, "depth": 1, "heads": 2, "patch_size": 4, "tile_size": 16, "code_channels": 4, "token_hidden": 8},
            },
            quality_levels=4,
            description="tiny untrained config for tests",
            **_HYPERNERV,
        ),
    )
}

DEFAULT_MODELS = {"intra": "intra-small", "hypernerv": "hypernerv-small"}


def _import(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; registered: {', '.join(MODELS)}") from None


def default_model(codec: str) -> str:
    try:
        return DEFAULT_MODELS[codec]
    except KeyError:
        raise UnknownModelError(f"unknown codec {codec!r}; choose one of {', '.join(DEFAULT_MODELS)}") from None


def list_models(codec: str | None = None) -> list[ModelSpec]:
    return [spec for spec in MODELS.values() if codec is None or spec.codec == codec]


def config_from_dict(config: Any, values: Mapping[str, Any]) -> Any:
    """``config`` (a frozen dataclass instance) with ``values`` replacing its fields.

    The one place where plain data (registry overrides, YAML ``model_overrides``, weights metadata)
    becomes a config: a mapping given for a sub-config field updates that sub-config, lists become
    tuples. A field the config lacks raises ``ModelConfigError`` naming it.
    """
    known = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise ModelConfigError(f"{type(config).__name__} has no field {key!r}; fields: {', '.join(sorted(known))}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            value = config_from_dict(current, value)
        elif isinstance(value, list):
            value = tuple(value)
        changes[key] = value
    try:
        return dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as exc:  # a config's own consistency check (__post_init__)
        raise ModelConfigError(f"{type(config).__name__}: {exc}") from None


def create_config(name: str, **overrides: Any) -> Any:
    """The frozen config of model ``name``, with ``overrides`` (see :func:`config_from_dict`) on top."""
    spec = get_spec(name)
    config = config_from_dict(_import(spec.config_cls)(), spec.config_overrides)
    return config_from_dict(config, overrides) if overrides else config


def create_model(name: str, **overrides: Any) -> Any:
    """A freshly initialised (untrained) model ``name``: the one front door for building models."""
    spec = get_spec(name)
    return _import(spec.model_cls)(create_config(name, **overrides))


def _config_to_json(config: Any) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def _flat_fields(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> {"hypernet.dim": 128, ...}."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flat_fields(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def registered_config_diff(name: str, config: Any) -> list[str]:
    """``"field: given != registered"`` for every field where ``config`` differs from ``create_config(name)``."""
    given = _flat_fields(dataclasses.asdict(config))
    registered = _flat_fields(dataclasses.asdict(create_config(name)))
    return [
        f"{key}: {given.get(key, '(missing)')!r} != {registered.get(key, '(missing)')!r}"
        for key in sorted(given.keys() | registered.keys())
        if given.get(key) != registered.get(key)
    ]


def _config_from_metadata(name: str, text: str, where: Path) -> Any:
    """The config a weights file stores for ``name``, refused unless it equals the registry's."""
    config_cls = _import(get_spec(name).config_cls)
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        upgrade = getattr(config_cls, "upgrade_dict", None)  # older metadata forms, read in one place
        config = config_from_dict(config_cls(), upgrade(raw) if upgrade else raw)
    except (ValueError, TypeError) as exc:
        raise ModelConfigError(f"{where}: unreadable config for {name!r}: {exc}") from None
    diff = registered_config_diff(name, config)
    if diff:
        raise ModelConfigError(f"{where}: config differs from the registered {name!r} ({'; '.join(diff)})")
    return config


def save_weights(model: Any, name: str, path: str | Path) -> str:
    """Write ``model``'s state dict as safetensors with metadata; return the file's sha256."""
    spec = get_spec(name)
    config = model.config
    if type(config).__name__ != spec.config_cls.rpartition(":")[2]:
        raise UnknownModelError(f"model config {type(config).__name__} does not belong to {name!r}")
    diff = registered_config_diff(name, config)
    if diff:  # one name, one architecture: register a new name for a new config
        raise ModelConfigError(f"model config differs from the registered {name!r} ({'; '.join(diff)})")
    import torch

    from nvcodec.entropy import RANS_TABLES

    storage = {"float32": torch.float32, "float16": torch.float16}[spec.storage_dtype]
    parameters = {k for k, _ in model.named_parameters()}
    # Only learned parameters take the storage dtype; buffers (CDF tables, compressai's 1e-9
    # likelihood floor and GDN's 2^-36 pedestal, which float16 flushes to 0) stay float32.
    state = {
        k: (v.detach().to(storage) if v.is_floating_point() and k in parameters else v.detach()).cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    # The rANS tables are derived data with a file of their own (``save_entropy_tables``): a model whose
    # entropy models were updated before saving stores them empty, as a fresh model has them.
    for key in [k for k in state if k.rpartition(".")[2] in RANS_TABLES]:
        state[key] = state[key].new_empty(0)
    metadata = {
        "storage_dtype": spec.storage_dtype,
        "format_version": str(WEIGHTS_FORMAT_VERSION),
        "model": name,
        "codec": spec.codec,
        "config": _config_to_json(config),
    }
    return _save_safetensors(state, path, metadata)


def save_entropy_tables(model: Any, path: str | Path) -> str:
    """Write the rANS tables of ``model`` (updated) as safetensors; return the file's sha256."""
    from nvcodec.entropy import entropy_tables

    tables = {k: v.contiguous() for k, v in entropy_tables(model).items()}
    return _save_safetensors(tables, path, {"format_version": str(WEIGHTS_FORMAT_VERSION)})


def _save_safetensors(tensors: dict[str, Any], path: str | Path, metadata: dict[str, str]) -> str:
    """Write ``tensors`` atomically (temporary file, then rename); return the file's sha256."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return sha256_file(path)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest() -> dict[str, str]:
    path = WEIGHTS_DIR / "MANIFEST.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def weights_fingerprint(name: str) -> str:
    """First 16 hex digits of the sha256 of model ``name``'s shipped weights ("" if untrained)."""
    spec = get_spec(name)
    if not spec.has_weights:
        return ""
    return _checked_sha256(spec.weights_path)[:FINGERPRINT_HEX]


@lru_cache(maxsize=None)
def _checked_sha256(path: Path) -> str:
    digest = sha256_file(path)
    listed = read_manifest().get(path.name)
    if listed is None:
        raise UnknownModelError(f"weights file {path.name} is not listed in {WEIGHTS_DIR / 'MANIFEST.json'}")
    if listed != digest:
        raise UnknownModelError(f"weights file {path} has sha256 {digest[:16]}…, manifest lists {listed[:16]}…")
    return digest


def restore_constants(model: Any, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with compressai's construction-time constant buffers (GDN ``pedestal`` and bounds,
    likelihood floors: names ending in ``pedestal`` or ``.bound``) taken from ``model`` itself.

    Files written before buffers were kept in float32 (intra-small) stored these in float16, where
    the 1e-9 likelihood floor and the 2^-36 pedestal became 0: -inf rates and NaN losses when
    fine-tuning. They are fixed by the architecture, never learned, so training starts from the
    model's own values. Inference keeps the file's values, so that old streams stay bit-exact.
    """
    own = model.state_dict()
    return {
        k: (own[k] if (k.endswith("pedestal") or k.endswith(".bound")) and k in own else v) for k, v in state.items()
    }


def initial_weights(model: Any, source: str) -> tuple[Any, dict[str, Any]]:
    """Weights to start training ``model`` from: ``source`` is a shipped model name or a weights file.

    Returns ``(source_model, state)``: the file's model (its config says what it was trained with)
    and its state dict with ``model``'s own constant buffers (``restore_constants``).
    """
    path = source if str(source).endswith(".safetensors") else get_spec(source).weights_path
    loaded, _ = load_weights(path)
    return loaded, restore_constants(model, loaded.state_dict())


def load_weights(path: str | Path, name: str | None = None, device: str = "cpu") -> tuple[Any, str]:
    """Build the model described by a weights file's metadata and load its tensors.

    Returns ``(model, model_name)``. ``name``, if given, must match the file's metadata, and the
    stored config must equal the registered config of that name (``ModelConfigError`` naming the
    differing fields otherwise). The tensors load strictly.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UnknownModelError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise UnknownModelError(f"{path} is not a safetensors weights file: {exc}") from None
    if metadata.get("format_version") != str(WEIGHTS_FORMAT_VERSION):
        raise UnknownModelError(f"{path}: weights format {metadata.get('format_version')!r} unsupported")
    file_name = metadata.get("model", "")
    if name is not None and file_name != name:
        raise UnknownModelError(f"{path} holds model {file_name!r}, expected {name!r}")
    spec = get_spec(file_name)
    config = _config_from_metadata(file_name, metadata.get("config", ""), path)
    model = _import(spec.model_cls)(config)
    # Half-precision files load back into the float32 model (load_state_dict copies with a cast).
    model.load_state_dict(load_file(str(path)), strict=True)
    model.eval().to(device)
    return model, file_name


@lru_cache(maxsize=8)
def load_codec(name: str, device: str = "cpu", allow_untrained: bool = False) -> Any:
    """The ``VideoCodec`` adapter for model ``name`` with its shipped weights loaded and ready to code.

    ``allow_untrained`` builds a randomly initialised model when no weights ship (tests only; its
    fingerprint is the empty string). Its initialisation is seeded (the same weights in every
    process) on a forked generator: the caller's is left alone. Shipped weights come with their rANS
    tables (``tables_path``); untrained models rebuild theirs, as a file without tables does.
    """
    spec = get_spec(name)
    tables = None
    if spec.has_weights:
        weights_fingerprint(name)  # verifies the sha256 against the manifest before loading
        model, _ = load_weights(spec.weights_path, name, device)
        if spec.tables_path.is_file():  # the export's tables, the same on every machine
            from safetensors.torch import load_file

            _checked_sha256(spec.tables_path)
            tables = load_file(str(spec.tables_path))
    elif allow_untrained:
        import torch

        with torch.random.fork_rng(devices=[]):  # the model is built on the CPU, then moved
            torch.manual_seed(0)
            model = create_model(name).eval()
        model = model.to(device)
    else:
        raise UnknownModelError(f"model {name!r} has no shipped weights (expected {spec.weights_path})")
    if tables is None:  # rebuilt here: streams decode on CPUs whose float kernels give the same tables
        model.update_entropy_models()
    else:
        from nvcodec.entropy import install_entropy_tables

        install_entropy_tables(model, tables)
    return _import(spec.adapter_cls)(model, name, device)


def check_fingerprint(name: str, fingerprint: str) -> None:
    """Refuse a stream whose weights fingerprint is not the installed model's."""
    installed = weights_fingerprint(name)
    if fingerprint != installed:
        raise BitstreamError(
            f"stream was made with weights {fingerprint or '(untrained)'} of {name!r}, "
            f"installed weights are {installed or '(untrained)'}"
        )
