"""``nvcodec train image|hypernerv ...``: LightningCLI over the registered training systems.

Usage: ``nvcodec train image --config train/configs/intra-small.yaml [--trainer.max_steps N]
[--ckpt_path last.ckpt]``. Everything after the kind goes to LightningCLI (``--help`` lists it).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from nvcodec.errors import InputError

__all__ = ["TRAINERS", "main"]

# kind -> (LightningModule, LightningDataModule), as "module:Class".
TRAINERS: dict[str, tuple[str, str]] = {
    "image": ("nvcodec.train.image:IntraSystem", "nvcodec.train.data:ImageDataModule"),
    "hypernerv": ("nvcodec.train.hypernerv:HyperNervSystem", "nvcodec.train.video_data:ClipDataModule"),
}


def _import(path: str) -> type:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_cli(kind: str, args: Sequence[str]):
    """Parse ``args`` for training ``kind`` and instantiate model, data and trainer (nothing runs yet)."""
    from pytorch_lightning.cli import LightningCLI

    class _TrainCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument("--ckpt_path", type=str | None, default=None, help="resume from this checkpoint")

    if kind not in TRAINERS:
        raise InputError(f"unknown training kind {kind!r}; choose one of {', '.join(TRAINERS)}")
    system_path, data_path = TRAINERS[kind]
    return _TrainCLI(
        _import(system_path),
        _import(data_path),
        args=list(args),
        run=False,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": f"nvcodec train {kind}"},
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: nvcodec train {{{'|'.join(TRAINERS)}}} --config CONFIG.yaml [LightningCLI options]")
        print("configs ship in nvcodec/train/configs/; `nvcodec train image --help` lists every option")
        return 0 if argv else 2
    cli = build_cli(argv[0], argv[1:])
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
