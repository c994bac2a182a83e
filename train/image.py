"""``IntraSystem``: Lightning training of the intra codec (variable rate, net + aux optimisers).

Loss per batch, with a quality level ``q`` drawn uniformly per batch (one model for all rates)::

    loss = lambdas[q] * 255**2 * MSE(x_hat, x) + bpp_estimate          (compressai convention)
    aux  = EntropyBottleneck quantile loss                               (own Adam)

Manual optimisation: the net optimiser steps through Lightning (so ``global_step`` counts training
iterations); the aux optimiser steps the raw torch optimiser so it does not double the step count.
The net learning rate drops by ``lr_drop_factor`` at ``lr_drop_step``, or, with ``lr_drop_at``, once
that fraction of the trainer's ``max_time`` has passed (a schedule fitted to a wall-time budget, so
that twins whose steps cost differently both drop at the same point of their budget). Before step
``noisy_y_hat_until`` the synthesis sees ``y + U(-0.5, 0.5)`` (fast early learning), afterwards
straight-through rounding around the mean (as at test time).
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer
from torch import Tensor

from nvcodec.entropy import split_aux_parameters
from nvcodec.codec.layers import ResidualUnit
from nvcodec.codec.reference import GainedMeanScaleHyperprior, ReferenceConfig
from nvcodec.registry import config_from_dict, create_model, initial_weights
from nvcodec.train.freeze import restrict_training, trains_aux

__all__ = ["IntraSystem", "rd_loss"]


def rd_loss(model: torch.nn.Module, batch: Tensor, quality: int, lmbda: float, noisy_y_hat: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """The training objective of one batch at one level: ``(loss, bpp, mse)`` with
    ``loss = lmbda * 255**2 * MSE(x_hat, x) + bpp_estimate`` (compressai convention)."""
    out = model(batch, quality, noisy_y_hat=noisy_y_hat)
    bpp = out.bits() / (batch.shape[0] * batch.shape[2] * batch.shape[3])
    mse = torch.mean((out.x_hat - batch) ** 2)
    return lmbda * 255.0**2 * mse + bpp, bpp, mse


class IntraSystem(pl.LightningModule):
    """Trains ``create_model(model_name, **model_overrides)`` (stored as ``self.model``).

    ``reference=True`` trains the diagnosis reference instead: compressai's plain
    MeanScaleHyperprior with the same gain units (``codec/reference.py``; ``model_overrides`` go to
    its ``ReferenceConfig``). ``init_weights``: a shipped model name or weights file to start from
    (with ``model_overrides``, an ablation: tensors the changed model lacks are dropped, new ones initialised).
    ``train_levels``: draw the quality level from these only (default: all levels).
    ``lr_warmup_steps``: ramp the learning rate linearly from ~0 over this many steps (a fresh Adam's
    first updates move every parameter by about ``lr``, a large kick to weights that are already trained).
    ``new_lr_scale``: with ``init_weights`` and ``model_overrides``, parameters the weights file lacks
    (modules the overrides add, zero-started) learn at ``lr * new_lr_scale``: at a fine-tuning rate of
    1e-5 a zero-started module would hardly leave zero.
    ``train_only``: parameter-name prefixes (e.g. ``[g_a., g_a_bypass.]``); everything else stays frozen, and
    the entropy bottleneck's aux step is skipped when its quantiles are frozen.
    ``lr_drop_at``: drop the learning rate once this fraction of ``trainer.max_time`` has passed
    (instead of at ``lr_drop_step``). ``grow_units_at``: g_s's residual units (``detail_units``,
    ``stride8_units``), all still at zero (a from-scratch model), are skipped, costing nothing, until this
    fraction of ``max_time`` has passed, then join; the model's function is unchanged at that moment,
    as when they were added to trained weights (phases 11 and 16b). Both need ``max_time``; Lightning's
    ``Timer`` keeps the elapsed time across resumes.
    ``live_bypass``: a from-scratch intra's stride-8 <-> latent convolutions (``bypass``) start at PyTorch's
    default initialisation instead of zero, so that y has a direct M-channel route from g_a's stride-8
    features (and g_s from y), the reference's own last / first layers, from step 0; the zero start exists
    so that trained weights without a bypass fine-tune from the same function, which a new model does not need.
    ``channels_last``: keep weights and batches in NHWC memory order (pairs with ``precision: bf16-mixed``
    on CPUs with AVX-512-BF16 / AMX; the model's entropy models stay float32 under autocast).
    """

    def __init__(
        self,
        model_name: str = "intra-small",
        model_overrides: dict[str, Any] | None = None,
        lr: float = 2e-4,
        aux_lr: float = 1e-3,
        lr_drop_step: int | None = None,
        lr_drop_factor: float = 0.1,
        lr_warmup_steps: int = 0,
        grad_clip: float = 1.0,
        noisy_y_hat_until: int = 0,
        log_every: int = 25,
        reference: bool = False,
        init_weights: str | None = None,
        train_levels: list[int] | None = None,
        channels_last: bool = False,
        new_lr_scale: float = 1.0,
        train_only: list[str] | None = None,
        lr_drop_at: float | None = None,
        grow_units_at: float | None = None,
        live_bypass: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        if new_lr_scale <= 0:
            raise ValueError(f"new_lr_scale must be > 0, got {new_lr_scale}")
        for name, value in (("lr_drop_at", lr_drop_at), ("grow_units_at", grow_units_at)):
            if value is not None and not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be a fraction of max_time in (0, 1), got {value}")
        if lr_drop_at is not None and lr_drop_step is not None:
            raise ValueError("give lr_drop_step or lr_drop_at, not both")
        self.fresh_parameters: set[str] = set()  # names of parameters not loaded from init_weights
        if reference:
            self.model = GainedMeanScaleHyperprior(config_from_dict(ReferenceConfig(), model_overrides or {}))
        else:
            self.model = create_model(model_name, **(model_overrides or {}))  # YAML lists become tuples there
        if init_weights:
            source, state = initial_weights(self.model, init_weights)
            if model_overrides:  # an ablation started from full weights: tensors the changed model lacks are dropped
                state = self._matching(state)
            state = self._retarget_gains(state, tuple(source.config.lambdas))
            self.model.load_state_dict(state, strict=not model_overrides)
        if live_bypass:
            if init_weights or not getattr(self.model.config, "bypass", False):  # the reference has no bypass
                raise ValueError("live_bypass is for an intra model with bypass: true trained from scratch (no init_weights)")
            for layer in (self.model.g_a_bypass, self.model.g_s_bypass):
                layer.reset_parameters()
        self.lambdas = tuple(self.model.config.lambdas)
        self.train_levels = tuple(train_levels) if train_levels else tuple(range(len(self.lambdas)))
        if not all(0 <= level < len(self.lambdas) for level in self.train_levels):
            raise ValueError(f"train_levels {self.train_levels} outside 0..{len(self.lambdas) - 1}")
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        restrict_training(self.model, train_only, model_name)
        self.train_aux = trains_aux(self.model)
        self.growing = [m for m in self.model.modules() if isinstance(m, ResidualUnit)] if grow_units_at is not None else []
        if grow_units_at is not None and not self.growing:
            raise ValueError("grow_units_at needs a model with residual units (detail_units / stride8_units)")
        if any(not unit.is_zero for unit in self.growing):
            raise ValueError("grow_units_at skips residual units, so they must still be at zero (train from scratch)")

    def on_train_start(self) -> None:
        if (self.hparams.lr_drop_at is not None or self.hparams.grow_units_at is not None) and self._timer() is None:
            raise ValueError("lr_drop_at and grow_units_at are fractions of the trainer's max_time: set trainer.max_time")
        self._refuse_undone_schedule()

    def _refuse_undone_schedule(self) -> None:
        """A run resumed with a longer ``max_time`` moves its schedule's fractions later: refuse where that would
        undo what already happened (trained residual units switched off again, a dropped rate raised again)."""
        hp, used = self.hparams, self._budget_used()
        if hp.grow_units_at is not None and used < hp.grow_units_at and any(not unit.is_zero for unit in self.growing):
            raise ValueError(f"resumed at {used:.0%} of max_time, before grow_units_at {hp.grow_units_at}, with the residual "
                             "units already trained: they would be switched off; drop grow_units_at from the config")
        if hp.lr_drop_at is not None and used < hp.lr_drop_at and self.global_step >= hp.lr_warmup_steps:
            group = self.optimizers()[0].param_groups[0]
            if group["lr"] < hp.lr * group.get("lr_scale", 1.0) * (1.0 + hp.lr_drop_factor) / 2:  # restored after the drop
                raise ValueError(f"resumed at {used:.0%} of max_time, before lr_drop_at {hp.lr_drop_at}, from a run whose "
                                 f"rate had dropped: it would rise back to {hp.lr}; give the dropped rate as lr, without lr_drop_at")

    def _timer(self) -> Timer | None:
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        return timer if timer is not None and timer.time_remaining() is not None else None

    def _budget_used(self) -> float:
        """Fraction of ``trainer.max_time`` spent so far (0 without a trainer or a time budget)."""
        timer = self._timer() if self._trainer is not None else None
        if timer is None:
            return 0.0
        elapsed = timer.time_elapsed()
        return elapsed / (elapsed + timer.time_remaining())

    def _matching(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """The tensors of ``state`` that the model has with the same shape; says which it drops and which stay initialised."""
        own = self.model.state_dict()
        kept = {k: v for k, v in state.items() if k in own and (own[k].shape == v.shape or k.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table")))}
        dropped, fresh = sorted(set(state) - set(kept)), sorted(set(own) - set(kept))
        self.fresh_parameters = {name for name, _ in self.model.named_parameters() if name in fresh}
        print(f"init_weights with model_overrides: {len(kept)} tensors loaded, {len(dropped)} dropped {dropped[:8]}, "
              f"{len(fresh)} freshly initialised {fresh[:8]}", flush=True)
        return kept

    def _retarget_gains(self, state: dict[str, Tensor], source_lambdas: tuple[float, ...]) -> dict[str, Tensor]:
        """Start a new rate ladder from weights trained on another: level q's learned gains are scaled
        by ``sqrt(new_lambda_q / old_lambda_q)`` (quantiser step ~ lambda^-1/2), the rest is kept."""
        new = tuple(self.model.config.lambdas)
        if source_lambdas == new:
            return state
        if len(source_lambdas) != len(new):
            raise ValueError(f"init weights have {len(source_lambdas)} levels, the model {len(new)}")
        shift = 0.5 * torch.log(torch.tensor(new) / torch.tensor(source_lambdas))[:, None]  # (L, 1)
        print(f"init_weights: ladder {source_lambdas} -> {new}; log gains shifted by {shift.flatten().tolist()}", flush=True)
        state = dict(state)
        state["log_gain"] = state["log_gain"] + shift  # float16 files: the sum is float32
        state["log_inv_gain"] = state["log_inv_gain"] - shift
        return state

    def forward(self, x: Tensor, quality: int) -> Tensor:
        """x (B, 3, H, W) in [0, 1] -> x_hat (B, 3, H, W)."""
        return self.model(x, quality).x_hat

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        net_params, aux_params = split_aux_parameters(self.model)
        scale = self.hparams.new_lr_scale
        fresh = {id(p) for name, p in self.model.named_parameters() if name in self.fresh_parameters} if scale != 1.0 else set()
        groups = [{"params": [], "lr_scale": 1.0}, {"params": [], "lr_scale": scale}]  # one group unless asked
        for parameter in net_params:
            if parameter.requires_grad:
                groups[id(parameter) in fresh]["params"].append(parameter)
        return [
            torch.optim.Adam([g for g in groups if g["params"]], lr=self.hparams.lr),
            torch.optim.Adam(aux_params, lr=self.hparams.aux_lr),
        ]

    def _current_lr(self) -> float:
        hp = self.hparams
        if hp.lr_drop_at is not None:
            dropped = self._budget_used() >= hp.lr_drop_at
        else:
            dropped = hp.lr_drop_step is not None and self.global_step >= hp.lr_drop_step
        lr = hp.lr * hp.lr_drop_factor if dropped else hp.lr
        if self.global_step < hp.lr_warmup_steps:
            return lr * (self.global_step + 1) / hp.lr_warmup_steps
        return lr

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        net_opt, aux_opt = self.optimizers()
        quality = self.train_levels[int(torch.randint(0, len(self.train_levels), ()))]
        if self.hparams.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        noisy = self.global_step < self.hparams.noisy_y_hat_until
        if self.growing:
            grown = self._budget_used() >= self.hparams.grow_units_at
            for unit in self.growing:
                unit.active = grown
        loss, bpp, mse = rd_loss(self.model, batch, quality, self.lambdas[quality], noisy)

        lr = self._current_lr()
        for group in net_opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        net_opt.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(net_opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        net_opt.step()

        if self.train_aux:
            aux_loss = self.model.aux_loss()
            aux_opt.zero_grad()
            aux_loss.backward()
            aux_opt.optimizer.step()  # raw torch step: keeps global_step == training iterations
        else:
            aux_loss = torch.zeros(())

        if self.global_step % self.hparams.log_every == 0:
            psnr = -10.0 * math.log10(max(float(mse.detach().clamp(0.0, 1.0)), 1e-10))
            self.log_dict(
                {
                    "train/loss": loss.detach(),
                    "train/bpp": bpp.detach(),
                    "train/psnr": psnr,
                    "train/quality": float(quality),
                    "train/aux": aux_loss.detach(),
                    "train/lr": lr,
                    "train/budget": self._budget_used(),
                },
                on_step=True,
                on_epoch=False,
                prog_bar=True,
            )
        return loss.detach()

