"""Export the server's ONNX Runtime graph into a cache folder, ahead of the first start.

The server image runs this at build time, so a container serves on ONNX Runtime (the CPU
default, ``--backend auto``) from its first start instead of exporting the encoder then
(tens of seconds). The graph lands where the server looks for it (``BITFIT_ONNX_CACHE``,
default ``~/.cache/bitfit/onnx``): the key is the backbone's fingerprint, the per-row
sites, the exporter and torch versions (engine/onnx_export.py), and a cached graph is
verified before use, so a stale or damaged copy is rebuilt, never trusted.

    python docker/onnx_cache.py /opt/onnx-cache [--backbone DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache_dir", type=Path, help="the cache folder to fill")
    parser.add_argument("--backbone", help="backbone folder (default: the packaged all-MiniLM-L6-v2, as the server)")
    args = parser.parse_args(argv)
    from engine import Engine, load_backbone
    from engine.runners import OnnxOptions

    # The server's own engine settings (shortcuts on, no quantization): the same cache keys.
    # Both graphs: bias rows only, and with LayerNorm gains (the first bitfit-ln set, such as
    # the bundled demo task, switches the server to that one).
    engine = Engine(load_backbone(args.backbone, device="cpu"), onnx=OnnxOptions(args.cache_dir))
    engine.enable_gains()
    print(f"ONNX graphs for {engine.spec.fingerprint[:12]} in {args.cache_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
