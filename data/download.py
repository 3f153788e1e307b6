"""Dataset resolution: --data-dir, then RECSYS_DATA_DIR, then the cache, then GroupLens.

Downloads are verified against the SHA-256 in ``checksums.json`` before anything is extracted,
and land in the cache atomically (extract to a temporary folder, then rename), so an
interrupted download never leaves a directory that looks like a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from importlib import resources
from typing import Optional

from recsys_pipeline.errors import DownloadError

DATA_DIR_ENV = "RECSYS_DATA_DIR"
DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens"


def known_datasets() -> dict[str, dict]:
    """Name -> {archive, size, sha256, layout} for the downloadable GroupLens datasets."""
    text = resources.files("recsys_pipeline.data").joinpath("checksums.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def default_cache_dir(environ: Mapping[str, str]) -> str:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "recsys-pipeline", "datasets")


def resolve_data_dir(
    dataset: str,
    flag_dir: Optional[str],
    environ: Mapping[str, str],
    config_dir: Optional[str] = None,
    cache_dir: Optional[str] = None,
    base_url: str = DEFAULT_BASE_URL,
    progress: bool = True,
) -> tuple[str, str]:
    """(directory holding the dataset, where it came from), first match wins:
    --data-dir, $RECSYS_DATA_DIR, data.data_dir, the cache, a download."""
    if flag_dir:
        return flag_dir, "--data-dir"
    if environ.get(DATA_DIR_ENV):
        return environ[DATA_DIR_ENV], f"${DATA_DIR_ENV}"
    if config_dir:
        return config_dir, "data.data_dir"
    cache_dir = cache_dir or default_cache_dir(environ)
    target = os.path.join(cache_dir, dataset)
    if os.path.isfile(os.path.join(target, ".complete")):
        return target, f"cache ({cache_dir})"
    download(dataset, cache_dir, base_url, progress)
    return target, f"downloaded from {base_url}"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(dataset: str, cache_dir: str, base_url: str = DEFAULT_BASE_URL,
             progress: bool = True) -> str:
    """Downloads, verifies and extracts ``dataset`` into ``cache_dir/dataset``."""
    datasets = known_datasets()
    if dataset not in datasets:
        raise DownloadError(
            f"dataset {dataset!r} cannot be downloaded (known: {', '.join(sorted(datasets))}). "
            "Download it yourself and pass --data-dir DIR."
        )
    info = datasets[dataset]
    url = f"{base_url.rstrip('/')}/{info['archive']}"
    target = os.path.join(cache_dir, dataset)
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as e:
        raise DownloadError(
            f"cannot create the dataset cache {cache_dir!r}: {e.strerror}") from None
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{dataset}-") as tmp:
        archive = os.path.join(tmp, info["archive"])
        _fetch(url, archive, info.get("size"), progress)
        digest = _sha256(archive)
        if digest != info["sha256"]:
            raise DownloadError(
                f"checksum mismatch for {url}: got SHA-256 {digest}, expected {info['sha256']}. "
                "The download is corrupt or the file changed upstream; nothing was extracted."
            )
        extracted = os.path.join(tmp, "extracted")
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(extracted)
        except zipfile.BadZipFile as e:
            raise DownloadError(f"{url} is not a valid zip archive: {e}") from None
        entries = os.listdir(extracted)
        inner = os.path.join(extracted, entries[0]) if len(entries) == 1 else extracted
        with open(os.path.join(inner, ".complete"), "w") as f:
            f.write(digest + "\n")
        if os.path.exists(target):  # an incomplete leftover (no .complete marker)
            shutil.rmtree(target)
        os.replace(inner, target)
    return target


def _fetch(url: str, dest: str, expected_size: Optional[int], progress: bool) -> None:
    from tqdm import tqdm

    try:
        response = urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"cannot download {url}: {reason}. Without network access, download the archive "
            "elsewhere, unzip it and pass --data-dir DIR (or set RECSYS_DATA_DIR)."
        ) from None
    total = int(response.headers.get("Content-Length") or expected_size or 0) or None
    with response, open(dest, "wb") as out, tqdm(
        total=total, unit="B", unit_scale=True, desc=f"Downloading {os.path.basename(url)}",
        disable=not progress, file=sys.stderr,
    ) as bar:
        for chunk in iter(lambda: response.read(1 << 16), b""):
            out.write(chunk)
            bar.update(len(chunk))
