"""The S3 store's objects: every boto3 call of the backend goes through ``S3Objects``.

A network failure becomes one ``StoreUnavailable`` (HTTP 503) and a lost conditional
write becomes ``False``, so the store and its change log only see those two outcomes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

from bias_store.errors import StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class S3Timeouts:
    """How long one S3 call may take: a frozen endpoint answers 503 after about
    ``max_attempts * (connect_s or read_s)``, not after botocore's 60 s default."""

    connect_s: float = 2.0
    read_s: float = 10.0
    max_attempts: int = 2  # the first try included

    def __post_init__(self) -> None:
        if self.connect_s <= 0 or self.read_s <= 0 or self.max_attempts < 1:
            raise ValueError(f"S3 timeouts must be > 0 and max_attempts >= 1, got {self}")


class S3Objects:
    """The objects under ``s3://bucket/prefix/``: get, list, create-if-absent, replace-if-unchanged."""

    def __init__(self, client, bucket: str, prefix: str = "") -> None:
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"

    @classmethod
    def from_url(cls, url: str, endpoint_url: str | None = None, timeouts: S3Timeouts | None = None) -> S3Objects:
        """``s3://bucket/prefix``; credentials and region come the standard AWS way (env, profile, IAM role)."""
        import boto3
        from botocore.config import Config

        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"an S3 store URL looks like s3://bucket/prefix, not {url!r}")
        # Few quick retries: a store outage must surface as 503 fast, not hang requests.
        t = timeouts or S3Timeouts()
        config = Config(retries={"total_max_attempts": t.max_attempts, "mode": "standard"},
                        connect_timeout=t.connect_s, read_timeout=t.read_s)
        client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
        return cls(client, parsed.netloc, parsed.path)

    def _call(self, method: str, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                raise StoreUnavailable(f"S3 store {self.url} failed: {exc}") from None
            raise
        except BotoCoreError as exc:  # connection refused, timeouts, ...
            raise StoreUnavailable(f"S3 store {self.url} is unreachable: {exc}") from None

    @staticmethod
    def _code(exc) -> str:
        return str(exc.response.get("Error", {}).get("Code", ""))

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None if there is no such key."""
        from botocore.exceptions import ClientError

        try:
            answer = self._call("get_object", Key=self.prefix + key)
        except ClientError as exc:
            if self._code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        return answer["Body"].read(), answer["ETag"]

    def metadata(self, key: str) -> dict[str, str]:
        """The object's user metadata; {} if there is no such key."""
        from botocore.exceptions import ClientError

        try:
            return self._call("head_object", Key=self.prefix + key).get("Metadata", {})
        except ClientError as exc:
            if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                return {}
            raise

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        """Keys (without the store prefix) under ``prefix``, in order, after ``start_after``."""
        kwargs = {"Prefix": self.prefix + prefix}
        if start_after is not None:
            kwargs["StartAfter"] = self.prefix + start_after
        while True:
            answer = self._call("list_objects_v2", **kwargs)
            for item in answer.get("Contents", []):
                yield item["Key"][len(self.prefix):]
            if not answer.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = answer["NextContinuationToken"]

    def create(self, key: str, body: bytes, metadata: dict[str, str] | None = None) -> bool:
        """Write ``key`` only if it does not exist (If-None-Match: *); False if it does."""
        return self._put(key, body, metadata, IfNoneMatch="*")

    def replace(self, key: str, body: bytes, etag: str | None) -> bool:
        """Replace ``key`` only if it still has ``etag`` (create it if ``etag`` is None); False if not."""
        return self._put(key, body, None, **({"IfMatch": etag} if etag else {"IfNoneMatch": "*"}))

    def _put(self, key: str, body: bytes, metadata: dict[str, str] | None, **condition: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._call("put_object", Key=self.prefix + key, Body=body, Metadata=metadata or {}, **condition)
        except ClientError as exc:
            # 412: the condition failed; 409: a concurrent conditional write is in progress.
            if self._code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=self.prefix + key)
