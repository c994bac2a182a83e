"""Lightning system for hypernerv meta-training (``nvcodec train hypernerv --config ...``).

The ``nn.Module`` is ``self.model`` (built through ``nvcodec.registry.create_model``; checkpoint keys
are ``model.*``). Manual optimisation: the network optimiser minimises ``bpp + lambda[q] * MSE``
with one quality level ``q`` drawn per clip; the aux optimiser fits the entropy bottleneck's
quantiles (``aux_loss``). ``train_frames`` < T decodes a random subset of each clip's frames per
step (the hypernetwork always reads the whole clip). ``init_checkpoint`` starts from another run's
``model.*`` weights (fine-tuning with fresh optimisers), unlike ``--ckpt_path`` which resumes a run;
``init_weights`` does the same from a shipped model name or weights file. ``edge_weight`` > 1 weights
the distortion of the clip's first and last frames that much more than its centre (linear in the
distance from the centre), against the clip-edge dip (README, Clip pulsing).

A model whose hypernetwork reads ``context_frames`` F needs clips of T + 2F frames from the data
(``data.clip_len``): the middle T are the clip, F either side its context. ``train_only`` (a
parameter-name prefix, e.g. ``"hypernet."``) trains only those parameters: with the hypernetwork
alone, the decoder, gains and token densities (and so the bitstream and the rANS tables) stay those
of the starting weights.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from nvcodec.entropy import split_aux_parameters
from nvcodec.hypernerv.model import edge_weights
from nvcodec.registry import create_model, initial_weights
from nvcodec.train.freeze import restrict_training, trains_aux

__all__ = ["HyperNervSystem"]


class HyperNervSystem(pl.LightningModule):
    def __init__(
        self,
        model_name: str = "hypernerv-small",
        model_overrides: dict[str, Any] | None = None,
        lr: float = 5e-4,
        aux_lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 200,
        total_steps: int = 10_000,
        min_lr_ratio: float = 0.05,
        grad_clip: float = 1.0,
        train_frames: int | None = None,
        init_checkpoint: str | None = None,
        init_weights: str | None = None,
        edge_weight: float = 1.0,
        train_only: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        if init_checkpoint and init_weights:
            raise ValueError("give init_checkpoint or init_weights, not both")
        self.model = create_model(model_name, **(model_overrides or {}))
        if init_checkpoint:
            # Fine-tuning: start from another run's weights with fresh optimisers and schedule.
            from nvcodec.train.export import model_state

            # Parameters the checkpoint lacks (a module enabled by ``model_overrides``, zero-initialised
            # as a no-op) keep their initialisation; anything the model does not have is an error.
            state = torch.load(init_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
            self._load_start(model_state(state), f"init_checkpoint {init_checkpoint}")
        if init_weights:
            self._load_start(initial_weights(self.model, init_weights)[1], f"init_weights {init_weights}")
        self.frame_weights = edge_weights(self.model.config.clip_len, edge_weight)  # (T,) or None
        restrict_training(self.model, train_only, model_name)
        self.train_aux = trains_aux(self.model)

    def split_batch(self, batch: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B, T + 2F, 3, t, t) data clips -> the clip (B, T, ...) and its context (B, 2F, ...) or None."""
        length, side = self.model.config.clip_len, self.model.config.hypernet.context_frames
        if batch.shape[1] != length + 2 * side:
            raise ValueError(f"data clips of {batch.shape[1]} frames; this model needs {length + 2 * side} (clip_len {length} + 2 x context_frames {side}): set data.clip_len")
        if not side:
            return batch, None
        return batch[:, side : side + length], torch.cat([batch[:, :side], batch[:, side + length :]], dim=1)

    def _load_start(self, state: dict[str, Tensor], origin: str) -> None:
        """Load starting weights. Parameters they lack (a module enabled by ``model_overrides``,
        zero-initialised as a no-op) keep their initialisation; anything the model lacks is an error."""
        result = self.model.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise ValueError(f"{origin} has parameters this model lacks: {result.unexpected_keys}")
        if result.missing_keys:
            print(f"{origin}: new parameters keep their initialisation: {result.missing_keys}", flush=True)

    def forward(self, clip: Tensor, qualities: Tensor):
        return self.model(clip, qualities)

    def _lr_factor(self, step: int) -> float:
        hp = self.hparams
        if step < hp.warmup_steps:
            return (step + 1) / hp.warmup_steps
        progress = min(1.0, (step - hp.warmup_steps) / max(1, hp.total_steps - hp.warmup_steps))
        return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def configure_optimizers(self):
        net, aux = split_aux_parameters(self.model)
        net = [p for p in net if p.requires_grad]
        net_opt = torch.optim.AdamW(net, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        aux_opt = torch.optim.Adam(aux, lr=self.hparams.aux_lr)
        return [net_opt, aux_opt]

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """``batch``: (B, T [+ 2F], 3, tile, tile) clips in [0, 1]."""
        net_opt, aux_opt = self.optimizers()
        batch, context = self.split_batch(batch)
        for group in net_opt.param_groups:
            group["lr"] = self.hparams.lr * self._lr_factor(self.global_step)
        qualities = torch.randint(0, self.model.config.quality_levels, (batch.shape[0],), device=batch.device)
        frame_index = None
        if self.hparams.train_frames is not None and self.hparams.train_frames < batch.shape[1]:
            # Decode a random subset of the frames: halves the decoder's cost, same expected loss.
            frame_index = torch.randperm(batch.shape[1], device=batch.device)[: self.hparams.train_frames].sort().values
        output = self.model(batch, qualities, frame_index, context)
        rd = self.model.rd_loss(output, batch, qualities, self.frame_weights)
        net_opt.zero_grad()
        self.manual_backward(rd.loss)
        self.clip_gradients(net_opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        net_opt.step()
        aux_loss = self.model.aux_loss()
        if self.train_aux:
            aux_opt.zero_grad()
            self.manual_backward(aux_loss)
            aux_opt.optimizer.step()  # raw torch step: keeps global_step == training batches
        self.log_dict(
            {"train/loss": rd.loss.detach(), "train/bpp": rd.bpp.mean().detach(), "train/psnr": rd.psnr.mean().detach(), "train/aux": aux_loss.detach()},
            prog_bar=True,
        )
        return rd.loss.detach()

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        """Rounded codes (as coded), every quality level on the same clips."""
        batch, context = self.split_batch(batch)
        for quality in range(self.model.config.quality_levels):
            qualities = torch.full((batch.shape[0],), quality, dtype=torch.long, device=batch.device)
            rd = self.model.rd_loss(self.model(batch, qualities, context=context), batch, qualities)
            self.log_dict({f"val/psnr_q{quality}": rd.psnr.mean(), f"val/bpp_q{quality}": rd.bpp.mean()}, batch_size=batch.shape[0])
