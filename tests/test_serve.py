"""``nvcodec serve`` end to end: a real uvicorn server in a subprocess, a real httpx client.

One server (1 encode worker, queue 1, 1 MiB uploads, 1 MiB chunk cache) serves the whole module; the
last test kills it with SIGKILL during an encode and restarts it on the same data folder. Inputs
are short: 4 and 10 frames of the shared carphone clip (176x144), 1 frame for the delete test.
"""

from __future__ import annotations

import io as bytes_io
import json
import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
psutil = pytest.importorskip("psutil")

from conftest import MEDIA, NVCODEC  # noqa: E402

from nvcodec.serve.process import ServerProcess  # noqa: E402

CLIP = MEDIA / "carphone_pristine.mp4"
CACHE_MB = 1
# RSS may grow by the cache bound plus this: decode buffers of the 2 decode threads, encoded
# replies, allocator slack. Stated here and in the README.
RSS_MARGIN_BYTES = 160 << 20
SERVER_ARGS = ("--workers", "1", "--queue", "1", "--max-upload-mb", "1", "--cache-mb", str(CACHE_MB),
               "--max-frames", "200", "--log-level", "warning")


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([*NVCODEC, *args], capture_output=True, text=True, timeout=120, env=env)


def api_client(server: ServerProcess, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=120)


def add_key(data: Path, name: str) -> str:
    result = cli("keys", "add", name, "--data", str(data))
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("nvk_") and "\n" not in key
    return key


def assert_one_line_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "\n" not in response.text.strip()
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


def wait_status(client: httpx.Client, video_id: str, wanted: set[str], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(f"/v1/videos/{video_id}").json()
        assert 0.0 <= record["progress"] <= 1.0
        if record["status"] in wanted:
            return record
        assert record["status"] in ("queued", "encoding"), record
        time.sleep(0.1)
    raise AssertionError(f"video {video_id} never reached {wanted}")


def upload(client: httpx.Client, body: bytes, **params) -> httpx.Response:
    return client.post("/v1/videos", params=params, content=body)


def npy(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.load(bytes_io.BytesIO(response.content), allow_pickle=False)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    if not CLIP.is_file():
        pytest.skip(f"shared clip not found at {CLIP}")
    # Import the codecs here while the server starts (the reference decodes need them).
    warm = threading.Thread(target=lambda: __import__("nvcodec.codec.video") and __import__("nvcodec.hypernerv.video"))
    warm.start()
    root = tmp_path_factory.mktemp("serve")
    data = root / "data"
    keys = {name: add_key(data, name) for name in ("alice", "bob", "carol")}
    server = ServerProcess(data, SERVER_ARGS, log=root / "server.log")
    server.start()
    warm.join()
    yield server, keys
    server.stop()


@pytest.fixture(scope="module")
def videos(service):
    """Two ready videos of alice's: intra (4 one-frame chunks) and hypernerv (10 frames: 2 chunks)."""
    import nvcodec

    server, keys = service
    clip = CLIP.read_bytes()
    created = {}
    with api_client(server, keys["alice"]) as client:
        for name, params in (("intra", {"codec": "intra", "frames": "0:4"}), ("hypernerv", {"codec": "hypernerv", "quality": 1, "frames": "0:10"})):
            response = upload(client, clip, **params)
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["status"] == "queued" and set(body) == {"id", "status"}
            created[name] = body["id"]
        out = {}
        for name, video_id in created.items():
            record = wait_status(client, video_id, {"ready", "failed"})
            assert record["status"] == "ready", record
            stream = client.get(f"/v1/videos/{video_id}/stream").content
            out[name] = {"id": video_id, "record": record, "stream": stream, "frames": nvcodec.decode(stream)}
    return out


def test_flow_frames_ranges_stream_delete(service, videos) -> None:
    import nvcodec
    from nvcodec import io

    server, keys = service
    with api_client(server, keys["alice"]) as client:
        for name, video in videos.items():
            video_id, stream, reference = video["id"], video["stream"], video["frames"]
            record = client.get(f"/v1/videos/{video_id}").json()
            assert record["status"] == "ready" and record["progress"] == 1.0 and record["error"] is None
            assert record["stream"] == json.loads(json.dumps(nvcodec.info(stream).to_json_dict()))
            assert record["stream"]["codec"] == name
            assert stream == (server.data / "streams" / f"{video_id}.nvc").read_bytes()
            count = len(reference)
            assert count == (4 if name == "intra" else 10)
            # One frame: .npy and PNG are exact; it equals the API's (the CLI's) decode of the stream.
            last = count - 1
            assert np.array_equal(npy(client.get(f"/v1/videos/{video_id}/frames/{last}", params={"format": "npy"})), reference[last])
            png = client.get(f"/v1/videos/{video_id}/frames/1")
            assert png.headers["content-type"] == "image/png"
            from PIL import Image

            assert np.array_equal(np.asarray(Image.open(bytes_io.BytesIO(png.content)).convert("RGB")), reference[1])
            jpeg = client.get(f"/v1/videos/{video_id}/frames/0", params={"format": "jpeg"})
            assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
            assert_one_line_error(client.get(f"/v1/videos/{video_id}/frames/{count}"), 404)
            # A range: .npy exact, .mkv (FFV1) lossless.
            assert np.array_equal(npy(client.get(f"/v1/videos/{video_id}/frames", params={"start": 1, "stop": 3, "format": "npy"})), reference[1:3])
            mkv = client.get(f"/v1/videos/{video_id}/frames", params={"start": 2, "format": "mkv"})
            assert mkv.status_code == 200 and mkv.headers["content-type"] == "video/x-matroska"
            path = server.data.parent / f"range-{name}.mkv"
            path.write_bytes(mkv.content)
            assert np.array_equal(io.read_video(path).frames, reference[2:])
            # The stream with Range: 206 and exactly those bytes; a range past the end: 416.
            part = client.get(f"/v1/videos/{video_id}/stream", headers={"Range": "bytes=10-29"})
            assert part.status_code == 206 and part.content == stream[10:30]
            assert part.headers["content-range"] == f"bytes 10-29/{len(stream)}"
            tail = client.get(f"/v1/videos/{video_id}/stream", headers={"Range": "bytes=-7"})
            assert tail.status_code == 206 and tail.content == stream[-7:]
            bad = client.get(f"/v1/videos/{video_id}/stream", headers={"Range": f"bytes={len(stream)}-"})
            assert_one_line_error(bad, 416)
            assert bad.headers["content-range"] == f"bytes */{len(stream)}"
            assert_one_line_error(client.get(f"/v1/videos/{video_id}/stream", headers={"Range": "bytes=5-2"}), 416)

        # Delete: a third video, gone from the list, its stream gone from the disk.
        response = upload(client, CLIP.read_bytes(), codec="intra", frames="5")
        assert response.status_code == 202
        doomed = response.json()["id"]
        assert wait_status(client, doomed, {"ready", "failed"})["status"] == "ready"
        assert (server.data / "streams" / f"{doomed}.nvc").is_file()
        assert client.delete(f"/v1/videos/{doomed}").status_code == 204
        assert_one_line_error(client.get(f"/v1/videos/{doomed}"), 404)
        assert_one_line_error(client.get(f"/v1/videos/{doomed}/frames/0"), 404)
        assert doomed not in {v["id"] for v in client.get("/v1/videos").json()["videos"]}
        assert not (server.data / "streams" / f"{doomed}.nvc").exists()


def stored_state(server: ServerProcess) -> tuple:
    folders = [sorted(p.name for p in (server.data / name).iterdir()) for name in ("streams", "uploads", "tmp")]
    return tuple(tuple(f) for f in folders)


REFUSED_INPUTS = {
    "hls": b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
    "ffconcat": b"ffconcat version 1.0\nfile '/etc/passwd'\nfile 'carphone_pristine.mp4'\n",
    "tty": b"Just some notes, not a video.\n" * 40,
}


def test_refusals_status_one_line_error_nothing_stored(service, videos) -> None:
    server, keys = service
    clip = CLIP.read_bytes()
    alice_video = videos["intra"]["id"]
    before = stored_state(server)
    with api_client(server, keys["alice"]) as alice:
        listed = [v["id"] for v in alice.get("/v1/videos").json()["videos"]]
    # No key, a wrong key, a malformed header.
    with api_client(server, None) as anonymous:
        assert_one_line_error(anonymous.get("/v1/videos"), 401)
        assert_one_line_error(upload(anonymous, clip, codec="intra"), 401)
        assert_one_line_error(anonymous.get(f"/v1/videos/{alice_video}/frames/0"), 401)
        assert anonymous.get("/v1/health").status_code == 200  # the one route without a key
    with api_client(server, "nvk_wrong") as wrong:
        assert_one_line_error(wrong.get("/v1/videos"), 401)
        assert_one_line_error(upload(wrong, clip, codec="intra"), 401)
    assert_one_line_error(httpx.get(server.url + "/v1/videos", headers={"Authorization": f"Basic {keys['alice']}"}), 401)
    # A revoked key: valid a moment ago, refused right after `nvcodec keys revoke`.
    with api_client(server, keys["carol"]) as carol:
        assert carol.get("/v1/videos").status_code == 200
        revoked = cli("keys", "revoke", "carol", "--data", str(server.data))
        assert revoked.returncode == 0, revoked.stderr
        assert_one_line_error(carol.get("/v1/videos"), 401)
        assert_one_line_error(upload(carol, clip, codec="intra"), 401)
    listing = cli("keys", "list", "--data", str(server.data))
    assert "carol" in listing.stdout and "revoked" in listing.stdout and keys["carol"] not in listing.stdout
    # Another key's video is "not found", on every route; alice's video stays.
    with api_client(server, keys["bob"]) as bob:
        assert bob.get("/v1/videos").json() == {"videos": []}
        for route in ("", "/frames/0", "/frames?start=0&stop=1&format=npy", "/stream"):
            assert_one_line_error(bob.get(f"/v1/videos/{alice_video}{route}"), 404)
        assert_one_line_error(bob.delete(f"/v1/videos/{alice_video}"), 404)
        # Over the size limit (1 MiB): declared by Content-Length, and streamed without one.
        assert_one_line_error(upload(bob, os.urandom(1_200_000), codec="intra"), 413)
        chunked = bob.post("/v1/videos", params={"codec": "intra"}, content=iter([os.urandom(256 << 10)] * 5))
        assert_one_line_error(chunked, 413)
        # The input policy: playlists, concat lists, text.
        for name, body in REFUSED_INPUTS.items():
            reason = assert_one_line_error(upload(bob, body, codec="intra"), 415)
            assert "/etc/passwd" not in reason, name
        assert_one_line_error(upload(bob, b"", codec="intra"), 415)
        # Bad parameters.
        for params in ({"codec": "intra", "quality": 99}, {"codec": "hypernerv", "quality": -1}, {"codec": "intra", "quality": "high"},
                       {"codec": "h264"}, {"codec": "intra", "frames": "5:2"}, {"codec": "intra", "frames": "x"}):
            assert_one_line_error(upload(bob, clip, **params), 422)
        assert bob.get("/v1/videos").json() == {"videos": []}
    with api_client(server, keys["alice"]) as alice:
        assert [v["id"] for v in alice.get("/v1/videos").json()["videos"]] == listed
        assert alice.get(f"/v1/videos/{alice_video}").json()["status"] == "ready"
    assert stored_state(server) == before


def test_concurrent_frame_requests_are_correct_and_memory_is_bounded(service, videos) -> None:
    server, keys = service
    process = psutil.Process(server.pid)
    baseline = process.memory_info().rss  # models loaded: the fixture decoded frames already
    failures: list[str] = []

    def client_run(seed: int) -> None:
        rng = random.Random(seed)
        with api_client(server, keys["alice"]) as client:
            for _ in range(20):
                name = rng.choice(sorted(videos))
                video = videos[name]
                index = rng.randrange(len(video["frames"]))
                response = client.get(f"/v1/videos/{video['id']}/frames/{index}", params={"format": "npy"})
                if response.status_code != 200 or not np.array_equal(npy(response), video["frames"][index]):
                    failures.append(f"{name} frame {index}: {response.status_code}")

    threads = [threading.Thread(target=client_run, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not failures, failures
    assert all(not t.is_alive() for t in threads)
    cache = httpx.get(server.url + "/v1/health").json()["cache"]
    assert cache["limit_bytes"] == CACHE_MB << 20
    assert 0 < cache["bytes"] <= cache["limit_bytes"]
    assert cache["evictions"] > 0  # 1 MiB holds fewer than the 14 frames of both videos' chunks
    assert process.memory_info().rss <= baseline + (CACHE_MB << 20) + RSS_MARGIN_BYTES


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium (Debian package) not installed")
def test_page_renders_in_headless_chromium(service, videos, tmp_path) -> None:
    server, keys = service
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/videos" in page.text and "<script>" in page.text
    shot = tmp_path / "page.png"
    url = f"{server.url}/#key={keys['alice']}&video={videos['hypernerv']['id']}"
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=8000", f"--screenshot={shot}", "--window-size=1200,900", url],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape == (900, 1200, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # more than a blank page: text, the frame
    if os.environ.get("NVCODEC_SERVE_SCREENSHOT"):
        shutil.copy(shot, os.environ["NVCODEC_SERVE_SCREENSHOT"])


def test_queue_full_503_then_sigkill_mid_encode_and_restart(service, videos) -> None:
    """Runs last: it kills the module's server and restarts it on the same data folder."""
    server, keys = service
    clip = CLIP.read_bytes()
    with api_client(server, keys["bob"]) as bob:
        # Capacity: 1 running + 1 queued. Two 120-frame encodes fill it; a third upload gets 503.
        long_jobs = [upload(bob, clip, codec="intra") for _ in range(2)]
        assert [r.status_code for r in long_jobs] == [202, 202], [r.text for r in long_jobs]
        before = stored_state(server)
        full = upload(bob, clip, codec="intra")
        assert_one_line_error(full, 503)
        assert int(full.headers["retry-after"]) > 0
        assert stored_state(server) == before
        assert len(bob.get("/v1/videos").json()["videos"]) == 2
        running, waiting = (r.json()["id"] for r in long_jobs)
        record = wait_status(bob, running, {"encoding", "ready", "failed"})
        assert record["status"] == "encoding" and record["progress"] < 1.0, record
    server.kill()
    assert not (server.data / "streams" / f"{running}.nvc").exists()

    server.start()
    with api_client(server, keys["bob"]) as bob:
        record = bob.get(f"/v1/videos/{running}").json()
        assert record["status"] == "failed" and "interrupted" in record["error"], record
        assert_one_line_error(bob.get(f"/v1/videos/{running}/stream"), 409)
        assert_one_line_error(bob.get(f"/v1/videos/{running}/frames/0"), 409)
        assert bob.get(f"/v1/videos/{waiting}").json()["status"] in ("queued", "encoding", "ready")  # re-queued
        assert bob.delete(f"/v1/videos/{waiting}").status_code == 204  # stops it: the test is done with it
    streams = {p.name for p in (server.data / "streams").iterdir()}
    assert f"{running}.nvc" not in streams and not any(".partial" in name for name in streams)
    with api_client(server, keys["alice"]) as alice:  # the other videos are intact, byte for byte
        for video in videos.values():
            record = alice.get(f"/v1/videos/{video['id']}").json()
            assert record["status"] == "ready" and record["stream"] == video["record"]["stream"]
            assert alice.get(f"/v1/videos/{video['id']}/stream").content == video["stream"]
