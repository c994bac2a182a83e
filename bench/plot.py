"""RD plots: one row per input, PSNR-RGB vs bpp (left) and MS-SSIM (dB) vs bpp (right), log-rate axis."""

from __future__ import annotations

import os
from pathlib import Path

from nvcodec.bench.results import RDResults

__all__ = ["plot_rd"]

# Fixed colours/markers per codec so that figures of different runs read the same way.
_STYLE = {
    "intra": ("tab:red", "o"),
    "hypernerv": ("tab:purple", "D"),
    "x264": ("tab:blue", "s"),
    "x265": ("tab:green", "^"),
    "svtav1": ("tab:orange", "v"),
    "jpeg": ("tab:gray", "x"),
    "webp": ("tab:brown", "+"),
}


def plot_rd(results: RDResults, path: str | os.PathLike, dpi: int = 80) -> None:
    """Write the RD figure of ``results`` to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rows = max(len(results.inputs), 1)
    fig, axes = plt.subplots(rows, 2, figsize=(11, 3.6 * rows), squeeze=False)
    models = {c.name: c.model for c in results.codecs}
    for row, info in enumerate(results.inputs):
        ax_psnr, ax_ssim = axes[row]
        for codec in results.codecs_for(info.name):
            points = results.points_for(info.name, codec)
            colour, marker = _STYLE.get(codec, (None, "."))
            label = codec if models.get(codec) in (None, "", codec) else f"{codec} ({models[codec]})"
            rates = [p.bpp for p in points]
            ax_psnr.plot(rates, [p.psnr_rgb for p in points], marker=marker, color=colour, label=label, ms=4, lw=1.2)
            ax_ssim.plot(rates, [p.ms_ssim_db for p in points], marker=marker, color=colour, label=label, ms=4, lw=1.2)
        title = f"{info.name}: {info.frames} frame(s) {info.width}x{info.height}"
        for ax, ylabel in ((ax_psnr, "PSNR-RGB (dB)"), (ax_ssim, "MS-SSIM (dB) = -10 log10(1 - MS-SSIM)")):
            ax.set_xscale("log")
            # Labels at 1-2-5 steps, none on minor ticks: readable however narrow the rate range.
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("bits per pixel (real bytes)")
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
        ax_psnr.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"RD, {results.machine.device}, {results.created_utc}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)
