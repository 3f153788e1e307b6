"""Dataset resolution order and downloads (from a loopback HTTP server), with checksums."""

import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from recsys_pipeline.data import download
from recsys_pipeline.errors import DownloadError


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-tiny/u.data", "1\t1\t5\t874965758\n")
        zf.writestr("ml-tiny/u.item", "1|Toy Story (1995)|x||x|0|0|1\n")
        zf.writestr("ml-tiny/u.user", "1|24|M|technician|85711\n")
    return buf.getvalue()


@pytest.fixture
def server():
    """Serves /ml-tiny.zip (and 404 for anything else) on 127.0.0.1; counts requests."""
    payload = _zip_bytes()
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path != "/ml-tiny.zip":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", payload, hits
    httpd.shutdown()
    httpd.server_close()


def _known(monkeypatch, sha256):
    monkeypatch.setattr(download, "known_datasets", lambda: {
        "ml-tiny": {"archive": "ml-tiny.zip", "size": 10, "sha256": sha256, "layout": "ml-100k"}})


def test_shipped_checksums_cover_the_default_dataset():
    known = download.known_datasets()
    assert known["ml-100k"]["sha256"] == (
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229")
    assert {"ml-1m", "ml-latest-small", "ml-25m"} <= set(known)


def test_download_verifies_extracts_and_then_uses_the_cache(server, monkeypatch, tmp_path):
    url, payload, hits = server
    _known(monkeypatch, hashlib.sha256(payload).hexdigest())
    cache = tmp_path / "cache"
    path, origin = download.resolve_data_dir("ml-tiny", None, {}, None, str(cache), url,
                                             progress=False)
    assert path == str(cache / "ml-tiny") and origin.startswith("downloaded")
    assert (cache / "ml-tiny" / "u.data").read_text() == "1\t1\t5\t874965758\n"
    assert (cache / "ml-tiny" / ".complete").is_file()
    path2, origin2 = download.resolve_data_dir("ml-tiny", None, {}, None, str(cache), url, False)
    assert path2 == path and origin2.startswith("cache") and len(hits) == 1
    assert [p.name for p in cache.iterdir()] == ["ml-tiny"]  # no temporary leftovers


def test_flag_then_env_then_config_then_cache(tmp_path):
    env = {download.DATA_DIR_ENV: "/from/env"}
    assert download.resolve_data_dir("ml-100k", "/flag", env, "/cfg")[0] == "/flag"
    assert download.resolve_data_dir("ml-100k", None, env, "/cfg")[0] == "/from/env"
    assert download.resolve_data_dir("ml-100k", None, {}, "/cfg") == ("/cfg", "data.data_dir")
    cached = tmp_path / "ml-100k"
    cached.mkdir()
    (cached / ".complete").write_text("x")
    assert download.resolve_data_dir("ml-100k", None, {}, None, str(tmp_path))[0] == str(cached)


def test_checksum_mismatch_extracts_nothing(server, monkeypatch, tmp_path):
    url, _, _ = server
    _known(monkeypatch, "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"checksum mismatch for .*ml-tiny.zip.*nothing was"):
        download.resolve_data_dir("ml-tiny", None, {}, None, str(cache), url, progress=False)
    assert list(cache.iterdir()) == []


def test_unreachable_host_and_unknown_dataset(server, monkeypatch, tmp_path):
    url, payload, _ = server
    _known(monkeypatch, hashlib.sha256(payload).hexdigest())
    with pytest.raises(DownloadError, match=r"cannot download .*/missing/ml-tiny.zip.*--data-dir"):
        download.download("ml-tiny", str(tmp_path), url + "/missing", progress=False)
    with pytest.raises(DownloadError, match=r"dataset 'ml-5m' cannot be downloaded"):
        download.download("ml-5m", str(tmp_path), url, progress=False)


def test_default_cache_dir_follows_xdg():
    assert download.default_cache_dir({"XDG_CACHE_HOME": "/x"}) == "/x/recsys-pipeline/datasets"
