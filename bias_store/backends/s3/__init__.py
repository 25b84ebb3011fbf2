"""The S3 store: any S3-compatible object store, no lock service (conditional writes only).

``store.py`` (the backend), ``objects.py`` (every boto3 call). boto3 is imported only when
a store is opened, so importing this package costs nothing without it.
"""

from bias_store.backends.s3.store import S3Store

__all__ = ["S3Store"]
