"""Bias sets: the file format, validation, bias sites per architecture, and the store.

Importing the package is light: no module of it imports torch (or boto3) at import time,
only the functions that need it, so `bitfit --help` and store-only callers never load it.
"""

from bias_store.backends.folder import FilesystemStore
from bias_store.changelog import Change, LogTruncated
from bias_store.errors import (
    BiasSetTooLarge,
    BiasStoreError,
    FingerprintMismatch,
    InvalidBiasSet,
    InvalidTaskName,
    StoreUnavailable,
    TaskNotFound,
    UnsupportedArchitecture,
    VersionNotFound,
)
from bias_store.format import BiasSet, BiasSetMeta, dumps, loads
from bias_store.open_store import open_store
from bias_store.spec import BackboneSpec, build_spec, fingerprint
from bias_store.store import BiasStore, TaskRecord
from bias_store.validate import ValidatedUpload, check_task_name, validate, validate_bytes, validate_upload

__all__ = [
    "BackboneSpec", "BiasSet", "Change", "LogTruncated", "StoreUnavailable", "open_store",
    "BiasSetMeta", "BiasSetTooLarge", "BiasStore", "BiasStoreError",
    "FilesystemStore", "FingerprintMismatch", "InvalidBiasSet", "InvalidTaskName",
    "TaskNotFound", "TaskRecord", "UnsupportedArchitecture", "ValidatedUpload", "VersionNotFound",
    "build_spec", "check_task_name", "dumps", "fingerprint", "loads", "validate", "validate_bytes", "validate_upload",
]
