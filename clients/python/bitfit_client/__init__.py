"""Client for the BitFit multi-task inference server: ``Client`` (sync) and ``AsyncClient``."""

from bitfit_client._base import API_KEY_ENV
from bitfit_client._calls import Item, Options
from bitfit_client.aio import AsyncClient
from bitfit_client.client import Client
from bitfit_client.errors import (
    ArtifactNotFound,
    BitfitError,
    FileNotFound,
    FingerprintMismatch,
    Forbidden,
    InvalidBiasSet,
    InvalidDataFile,
    InvalidInput,
    InvalidJobConfig,
    JobConflict,
    JobNotCancellable,
    JobNotFound,
    LabelChange,
    LimitExceeded,
    MalformedAnswer,
    NotFound,
    NotReady,
    Overloaded,
    RateLimited,
    ServerError,
    TaskNotFound,
    Timeout,
    TransportError,
    Unauthorized,
    ValidationError,
    VersionNotFound,
)
from bitfit_client.models import (
    DataFile,
    Job,
    JobEvent,
    JobPage,
    Prediction,
    PredictResult,
    Ready,
    TaskInfo,
    TaskSummary,
)
from bitfit_client.retry import Retry

__version__ = "0.1.0"

__all__ = [
    "API_KEY_ENV", "ArtifactNotFound", "AsyncClient", "BitfitError", "Client", "DataFile", "FileNotFound",
    "FingerprintMismatch", "Forbidden", "InvalidBiasSet", "InvalidDataFile", "InvalidInput", "InvalidJobConfig", "Item",
    "Job", "JobConflict", "JobEvent", "JobNotCancellable", "JobNotFound", "JobPage", "LabelChange", "LimitExceeded",
    "MalformedAnswer", "NotFound", "NotReady", "Options", "Overloaded", "PredictResult", "Prediction", "RateLimited",
    "Ready", "Retry", "ServerError", "TaskInfo", "TaskNotFound", "TaskSummary", "Timeout", "TransportError",
    "Unauthorized", "ValidationError", "VersionNotFound", "__version__",
]
