"""Where an intra-small training step spends its time: forward + backward of each piece, one thread.

Times every layer of ``g_a`` and ``g_s``, the g_s detail units and the entropy model (hyperprior +
channel slices) on their own inputs for one batch (default 2 x 256x256, the phase-11/12 recipe),
mean of ``--repeats`` runs after one warm-up, and prints each piece's seconds and share of the sum.
The shares say what makes the step costly; absolute seconds depend on what else runs on the CPU.
``--bf16``: as training runs (bf16 autocast, channels_last), where convolutions get much cheaper and
the rest (attention, small latent-grid convs, elementwise work) weighs more.

    OMP_NUM_THREADS=1 python tools/intra_step_profile.py [--bf16]
"""

from __future__ import annotations

import argparse
import functools
import time
from collections import defaultdict

import torch

from nvcodec.codec.layers import AttentionBlock
from nvcodec.registry import create_model


def timed(fn, repeats: int, bf16: bool = False) -> float:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
    return (time.perf_counter() - start) / repeats


def backward_of(module, inputs: torch.Tensor):
    leaf = inputs.detach().requires_grad_(True)
    return lambda: module(leaf).float().mean().backward()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="intra-small")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast + channels_last, as training runs")
    parser.add_argument("--stride8-units", type=int, default=0, help="profile the model with this many g_s units at stride 8")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model(args.model, **({"stride8_units": args.stride8_units} if args.stride8_units else {})).train()
    memory = torch.channels_last if args.bf16 else torch.contiguous_format
    model = model.to(memory_format=memory)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape).contiguous(memory_format=memory)

    x = rand(args.batch, 3, args.size, args.size)
    clock = functools.partial(timed, repeats=args.repeats, bf16=args.bf16)
    groups: dict[str, float] = defaultdict(float)

    def time_layers(layers, h: torch.Tensor, prefix: str, other: str) -> None:
        """Add each layer's time to ``prefix attention`` or ``prefix other``, feeding it the previous one's output."""
        for layer in layers:
            kind = "attention" if isinstance(layer, AttentionBlock) else other
            groups[f"{prefix} {kind}"] += clock(backward_of(layer, h))
            with torch.no_grad():
                h = layer(h)

    time_layers(model.g_a, x, "g_a", "conv/GDN/head")
    with torch.no_grad():
        y = model.analysis(x) * model._gain(model.config.quality_levels - 1)
    time_layers(model.g_s, y, "g_s", "conv/IGDN")
    if model.config.detail_units:
        n = model.config.channels
        for index, unit in enumerate(model.g_s_detail):
            scale = 4 // (2**index)  # after the stride-4 and the stride-2 IGDN
            size = args.size // scale
            groups[f"g_s detail unit at stride {scale}"] += clock(backward_of(unit, rand(args.batch, n, size, size)))
    if model.config.stride8_units:
        size = args.size // 8
        groups["g_s units at stride 8"] += clock(backward_of(model.g_s_stride8, rand(args.batch, model.config.channels, size, size)))
    if model.config.bypass:
        groups["g_s bypass deconv"] += clock(backward_of(model.g_s_bypass, y))

    leaf = y.detach().requires_grad_(True)

    def entropy() -> None:
        hyper = model.hyperprior(leaf)
        sliced = model.slice_coder(leaf, hyper.mean_support, hyper.scale_support)
        (sliced.likelihoods.clamp_min(1e-9).log2().sum() + sliced.y_hat.mean()).backward()

    groups["hyperprior + slice coder"] += clock(entropy)
    total = sum(groups.values())
    precision = "bf16 autocast + channels_last" if args.bf16 else "float32"
    print(f"{args.model}: batch {args.batch} x {args.size}x{args.size}, one thread, {precision}, forward + backward per piece")
    for name, seconds in groups.items():
        print(f"  {name:32s} {seconds:7.3f} s  {100 * seconds / total:5.1f} %")
    print(f"  {'sum':32s} {total:7.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
