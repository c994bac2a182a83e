"""Seconds per training step of intra-small or the compressai reference, by precision, memory order and torch.compile.

One step is what ``IntraSystem.training_step`` does: the rate-distortion loss (``train.image.rd_loss``) at a
level from phase 8w's mix, backward, gradient clip 1.0, Adam on the network, Adam on the entropy
bottleneck's quantiles. Random batches (default 2 x 256x256, the phase-11..23 recipe), no data loading
and no Lightning, so the figures are the model's own cost; ``--warmup`` steps first (they include
torch.compile's compilation, reported apart), then the median of ``--steps``.

    OMP_NUM_THREADS=2 python tools/train_step_speed.py --model intra-small --precision bf16 --compile whole
    OMP_NUM_THREADS=2 python tools/train_step_speed.py --reference --precision bf16
    OMP_NUM_THREADS=1 python tools/train_step_speed.py --set detail_units=false --set stride8_units=0
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from nvcodec.codec.reference import GainedMeanScaleHyperprior, ReferenceConfig
from nvcodec.entropy import split_aux_parameters
from nvcodec.registry import create_model
from nvcodec.train.image import rd_loss

LEVEL_MIX = (0, 1, 2, 3, 4, 5, 4, 5)  # train_levels of phase 8w onwards


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="intra-small", help="registry name (ignored with --reference)")
    parser.add_argument("--reference", action="store_true", help="compressai MeanScaleHyperprior(64, 128) with gain units")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="bf16: autocast, entropy models float32")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--compile", choices=("none", "whole"), default="none", help="whole: torch.compile(model)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=JSON",
                        help="config override of --model, e.g. --set detail_units=false (repeatable)")
    parser.add_argument("--json", help="append the result as one JSON line to this file")
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be >= 1")
    overrides = {}
    for item in args.overrides:
        field, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            overrides[field] = json.loads(value)
        except ValueError:
            parser.error(f"--set {item!r}: expected FIELD=JSON, e.g. detail_units=false")
    if overrides and args.reference:
        parser.error("--set applies to --model, not --reference")

    torch.manual_seed(0)
    if args.reference:
        model = GainedMeanScaleHyperprior(ReferenceConfig())  # N=64, M=128 by default
        name = "reference MeanScaleHyperprior(64, 128)"
    else:
        model = create_model(args.model, **overrides)
        name = args.model + "".join(f" {field}={json.dumps(value)}" for field, value in overrides.items())
    model.train()
    memory = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)
    net_params, aux_params = split_aux_parameters(model)
    net_opt = torch.optim.Adam(net_params, lr=1e-5)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    forward = torch.compile(model) if args.compile == "whole" else model
    lambdas = model.config.lambdas
    batch = torch.rand(args.batch, 3, args.size, args.size).contiguous(memory_format=memory)

    times = []
    start = time.perf_counter()
    warmup_s = 0.0
    for step in range(args.warmup + args.steps):
        quality = LEVEL_MIX[step % len(LEVEL_MIX)]
        began = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss, _, _ = rd_loss(forward, batch, quality, lambdas[quality])
        net_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net_params, 1.0)
        net_opt.step()
        aux_loss = model.aux_loss()
        aux_opt.zero_grad()
        aux_loss.backward()
        aux_opt.step()
        if step == args.warmup - 1:
            warmup_s = time.perf_counter() - start
        elif step >= args.warmup:
            times.append(time.perf_counter() - began)

    median = statistics.median(times)
    result = {
        "model": name, "precision": args.precision, "channels_last": args.channels_last, "compile": args.compile,
        "batch": args.batch, "size": args.size, "threads": torch.get_num_threads(), "warmup_steps": args.warmup,
        "warmup_s": round(warmup_s, 1), "steps": args.steps, "median_s_per_step": round(median, 4),
        "min_s_per_step": round(min(times), 4), "max_s_per_step": round(max(times), 4),
    }
    print(f"{name}: {args.precision}, channels_last={args.channels_last}, compile={args.compile}, {result['threads']} thread(s): "
          f"median {median:.3f} s/step ({1 / median:.2f} steps/s; min {min(times):.3f}, max {max(times):.3f}; "
          f"{args.warmup} warm-up steps {warmup_s:.1f} s)", flush=True)
    if args.json:
        with open(args.json, "a") as handle:
            handle.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
