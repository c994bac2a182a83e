"""Bit-exactness check of the intra codec: encode here, decode in fresh processes with 1 and 2 threads.

    python tools/intra_bitexact.py --model intra-small --images ../shared/media   (exit status 1 on any mismatch)

Every image is encoded at every quality level (``--encode-threads``); each fresh decoder process
loads the shipped weights itself, decodes every chunk with ``torch.set_num_threads(n)`` and reports
the sha256 of each decoded frame, which must equal the encoder's reconstruction's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from nvcodec.interface import ChunkData
from nvcodec.io import read_video
from nvcodec.registry import load_codec

__all__ = ["main"]


def _digest(frame: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()


def _decode_all(model: str, folder: Path, threads: int) -> dict[str, str]:
    torch.set_num_threads(threads)
    codec = load_codec(model)
    index = json.loads((folder / "index.json").read_text())
    digests = {}
    for key, entry in index.items():
        chunk = ChunkData(0, 1, (folder / f"{key}.bin").read_bytes())
        frame = codec.decode_chunk(entry["params"], chunk, entry["height"], entry["width"])
        digests[key] = _digest(frame[0])
    return digests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="intra-small")
    parser.add_argument("--images", default="../shared/media")
    parser.add_argument("--encode-threads", type=int, default=1)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--decode-dir", help=argparse.SUPPRESS)  # internal: decoder process mode
    args = parser.parse_args(argv)
    if args.decode_dir:
        print(json.dumps(_decode_all(args.model, Path(args.decode_dir), args.threads[0])))
        return 0

    torch.set_num_threads(args.encode_threads)
    codec = load_codec(args.model)
    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        index, expected = {}, {}
        for path in files:
            image = read_video(path).frames[0]
            for quality in range(codec.quality_levels):
                encoded = codec.encode(image[None], quality)
                key = f"{path.stem}-q{quality}"
                (folder / f"{key}.bin").write_bytes(encoded.chunks[0].payload)
                index[key] = {"params": dict(encoded.params), "height": image.shape[0], "width": image.shape[1]}
                expected[key] = _digest(encoded.reconstruction[0])
        (folder / "index.json").write_text(json.dumps(index))
        failures = 0
        for threads in args.threads:
            command = [sys.executable, str(Path(__file__).resolve()), "--model", args.model,
                       "--decode-dir", str(folder), "--threads", str(threads)]  # fmt: skip
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            digests = json.loads(result.stdout.strip().splitlines()[-1])
            mismatched = [key for key in expected if digests.get(key) != expected[key]]
            failures += len(mismatched)
            print(f"decoder with {threads} thread(s): {len(expected) - len(mismatched)}/{len(expected)} frames bit-exact"
                  + (f"; mismatched: {', '.join(mismatched)}" if mismatched else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
