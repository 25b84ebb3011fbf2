import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The product's default backend is "auto" (ONNX Runtime on the CPU when installed). The
# suite runs PyTorch unless a test asks for ONNX Runtime (tests/engine/test_onnx.py, the
# hot-swap tests), so that each test exports a graph only where it checks one.
os.environ.setdefault("BITFIT_BACKEND", "torch")
# `bitfit serve` starts a training worker process beside the server by default; the suite's
# servers start none unless a test asks for them (tests/server/test_jobs_*.py).
os.environ.setdefault("BITFIT_TRAIN_WORKERS", "0")

import pytest
import torch

# Without a GPU, Triton kernels run in Triton's interpreter, so the CPU suite checks their
# code (engine/row_bias_gemm.py). Read when triton is first imported: keep this before that.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tests.helpers import save_tiny_backbone  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return save_tiny_backbone(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def tiny_backbone(tiny_bert_dir):
    from engine import load_backbone

    return load_backbone(str(tiny_bert_dir), device="cpu")


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    """One ONNX graph cache per test session: each backbone is exported once."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def minilm_backbone():
    from engine import load_backbone

    return load_backbone(None, device="cpu")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A real S3 server (SeaweedFS) on loopback for the whole session, with the test bucket."""
    from tests.seaweedfs import SeaweedFS

    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
