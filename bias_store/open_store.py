"""Pick a backend by the store URL: a path or ``file://...`` is a folder, ``s3://bucket/prefix`` S3."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from bias_store.store import BiasStore

S3_ENDPOINT_ENV = "BITFIT_S3_ENDPOINT_URL"  # the variable the CLIs read an S3 endpoint from (off AWS)


def open_store(
    url: str | os.PathLike, keep_versions: int = 5, s3_endpoint_url: str | None = None, *,
    s3_connect_timeout_s: float = 2.0, s3_read_timeout_s: float = 10.0, s3_max_attempts: int = 2,
    cache_dir: str | os.PathLike | None = None, cache_bytes: int = 1 << 30,
) -> BiasStore:
    """The store at ``url``. S3 credentials and region come the standard AWS way (env, profile, IAM role);
    one S3 call waits at most about ``s3_max_attempts`` x its connect/read timeout. ``cache_dir``
    (S3 only): keep up to ``cache_bytes`` of version files on local disk, checked by sha256."""
    text = os.fspath(url)
    scheme = urlparse(text).scheme
    if scheme == "s3":
        from bias_store.backends.s3 import S3Store  # boto3 is imported only for an S3 store
        from bias_store.backends.s3.objects import S3Timeouts

        timeouts = S3Timeouts(s3_connect_timeout_s, s3_read_timeout_s, s3_max_attempts)
        from bias_store.backends.s3.cache import DiskCache

        cache = DiskCache(cache_dir, cache_bytes) if cache_dir is not None else None
        return S3Store.from_url(text, keep_versions, endpoint_url=s3_endpoint_url, timeouts=timeouts, cache=cache)
    from bias_store.backends.folder import FilesystemStore

    if scheme == "file":
        return FilesystemStore(unquote(urlparse(text).path), keep_versions)
    if scheme and len(scheme) > 1:  # "c:" of a Windows path is not a scheme
        raise ValueError(f"unknown store URL scheme {scheme!r} in {text!r}: use a folder path, file://... or s3://bucket/prefix")
    return FilesystemStore(text, keep_versions)
