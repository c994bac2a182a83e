"""tools/intra_clip_levels.py: every intra level on a clip, whole-stream bytes, and its default-level rule."""

from __future__ import annotations

import json
from pathlib import Path

import nvcodec

DEMO = Path(__file__).resolve().parents[1] / "nvcodec" / "media" / "demo.mp4"


def test_clip_levels_report_the_streams_bytes_and_a_rising_ladder(tmp_path, load_tool):
    tool = load_tool("intra_clip_levels")
    out = tmp_path / "levels.json"
    status = tool.main(["--input", f"{DEMO},4,64x40", "--frames", "2", "--json", str(out)])
    result = json.loads(out.read_text())
    (name, rows), = result["clips"].items()
    assert name == "demo 64x40"
    assert [row["quality"] for row in rows] == list(range(6))
    _, frames = tool.load(f"{DEMO},4,64x40", 2)
    assert rows[0]["bytes"] == len(nvcodec.encode(frames, codec="intra", quality=0))  # the whole stream
    assert rows[0]["bpp"] == rows[0]["bytes"] * 8 / (2 * 64 * 40)
    assert [row["bytes"] for row in rows] == sorted(row["bytes"] for row in rows)
    assert status == (1 if rows[3]["psnr_rgb"] < rows[2]["psnr_rgb"] else 0)
