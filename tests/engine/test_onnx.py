"""The ONNX Runtime backend: the same logits as transformers + the bias set, and a cache that is never trusted blindly."""

import json
import random
import shutil

import pytest
import torch

pytest.importorskip("onnxruntime")

from bias_store import validate  # noqa: E402
from engine import Engine, load_backbone  # noqa: E402
from engine.runners.onnx_export import _verified, cached_graph  # noqa: E402
from engine.runners.ort import OnnxOptions, resolve_backend  # noqa: E402
from tests.helpers import random_bias_set, reference_logits, save_tiny_backbone  # noqa: E402

TEXTS = [
    "a gorgeous, witty film",
    "dull and far too long",
    "the plot twists kept me guessing until the very last scene of the movie",
    "meh",
]
PAIRS = [("is it good?", "a gorgeous, witty film"), ("any plot?", "the twists kept me guessing until the end")]


@pytest.fixture(scope="session")
def backbones(tmp_path_factory, tiny_bert_dir, tiny_backbone):
    """model_type -> (folder, backbone): one tiny model per architecture, made once (BERT: the
    suite's own, whose graph the server tests reuse from the session cache)."""
    made = {"bert": (tiny_bert_dir, tiny_backbone)}

    def get(model_type):
        if model_type not in made:
            base = save_tiny_backbone(tmp_path_factory.mktemp(f"onnx-{model_type}"), model_type, seed=3)
            made[model_type] = (base, load_backbone(str(base), device="cpu"))
        return made[model_type]

    return get


def ort_engine(backbone, cache, quantize="none") -> Engine:
    return Engine(backbone, onnx=OnnxOptions(cache, quantize))


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
def test_mixed_padded_batch_matches_transformers(backbones, onnx_cache, model_type):
    base, backbone = backbones(model_type)
    engine = ort_engine(backbone, onnx_cache)
    assert engine.backend == "onnxruntime"
    sets = {}
    for i in range(6):
        bs = random_bias_set(backbone.spec, f"t{i}", [f"l{j}" for j in range(2 + i % 3)], seed=i,
                             pooling="mean" if i % 2 else "cls", subset="query_intermediate" if i == 4 else "all")
        validate(bs, backbone.spec)
        engine.register(bs)
        sets[bs.meta.task] = bs
    rng = random.Random(0)
    items = [(f"t{rng.randrange(6)}", rng.choice(TEXTS)) for _ in range(16)]  # every row a random task, lengths differ
    rows = [(engine.get(n), engine.encode(engine.get(n), [t])[0]) for n, t in items]
    got = engine.logits(rows, split=[list(range(len(rows)))])  # one padded forward
    for (name, text), logits in zip(items, got):
        torch.testing.assert_close(logits, reference_logits(base, sets[name], [text])[0], atol=1e-4, rtol=0)


def test_text_pairs_and_plain_rows_in_one_batch(backbones, onnx_cache):
    base, backbone = backbones("bert")
    engine = ort_engine(backbone, onnx_cache)
    pair = random_bias_set(backbone.spec, "nli", ["yes", "no"], seed=7, inputs="text_pair")
    single = random_bias_set(backbone.spec, "sent", seed=8, pooling="mean")
    engine.register(pair)
    engine.register(single)
    rows = [(engine.get("nli"), r) for r in engine.encode(engine.get("nli"), [list(p) for p in PAIRS])]
    rows += [(engine.get("sent"), r) for r in engine.encode(engine.get("sent"), TEXTS[:2])]
    got = torch.stack(engine.logits(rows))
    want = torch.cat([reference_logits(base, pair, PAIRS), reference_logits(base, single, TEXTS[:2])])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_equals_the_torch_engine_after_a_replace(backbones, onnx_cache):
    _, backbone = backbones("bert")
    ort, eager = ort_engine(backbone, onnx_cache), Engine(backbone)
    for engine in (ort, eager):
        engine.register(random_bias_set(backbone.spec, "a", seed=1))
        engine.register(random_bias_set(backbone.spec, "a", seed=2), version=2)  # a new slot; the old one is freed
    torch.testing.assert_close(torch.tensor(ort.predict("a", TEXTS)[0].logits), torch.tensor(eager.predict("a", TEXTS)[0].logits),
                               atol=1e-4, rtol=0)


def test_a_bitfit_ln_set_switches_the_graph_to_gain_rows(backbones, onnx_cache):
    """The first set with LayerNorm gains makes the engine build the wider graph, then switch:
    plain and gain sets then share each ONNX forward, each equal to its own model."""
    from tests.engine.test_gains import gain_set

    base, backbone = backbones("bert")
    engine = ort_engine(backbone, onnx_cache)
    plain = random_bias_set(backbone.spec, "plain", seed=1, scale=0.2)
    engine.register(plain)
    before = engine.runner
    ln = gain_set(backbone.spec, "ln", seed=5, pooling="mean")
    validate(ln, backbone.spec)
    engine.register(ln)
    assert engine.table.has_gains and engine.runner is not before and engine.backend == "onnxruntime"
    rows = [(engine.get(n), engine.encode(engine.get(n), [t])[0]) for n, t in zip(["plain", "ln", "ln", "plain"], TEXTS)]
    got = torch.stack(engine.logits(rows, split=[list(range(len(rows)))]))
    want = torch.stack([reference_logits(base, {"plain": plain, "ln": ln}[n], [t])[0]
                        for n, t in zip(["plain", "ln", "ln", "plain"], TEXTS)])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_cache_hit_is_reused_and_a_corrupt_graph_is_rebuilt(backbones, onnx_cache, tmp_path):
    base, backbone = backbones("bert")
    layout = Engine(backbone).table.layout  # the layout the engine exports (shortcuts applied)
    path = cached_graph(backbone, layout, onnx_cache)
    stamp = path.stat().st_mtime_ns
    assert cached_graph(backbone, layout, onnx_cache) == path and path.stat().st_mtime_ns == stamp  # a hit: not exported again

    cache = tmp_path / "cache"
    shutil.copytree(path.parent, cache / path.parent.name)
    copy = cache / path.parent.name / "encoder.onnx"
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    copy.write_bytes(bytes(data))
    assert not _verified(copy.parent, _meta_without_digests(copy.parent))
    rebuilt = cached_graph(backbone, layout, cache)
    assert rebuilt.read_bytes() == path.read_bytes()  # exported afresh: the same graph again
    engine = Engine(backbone, onnx=OnnxOptions(cache))
    bs = random_bias_set(backbone.spec, "t", seed=5)
    engine.register(bs)
    torch.testing.assert_close(torch.stack(engine.logits([(engine.get("t"), r) for r in engine.encode(engine.get("t"), TEXTS)])),
                               reference_logits(base, bs, TEXTS), atol=1e-4, rtol=0)


def test_a_graph_from_another_exporter_version_is_not_trusted(backbones, onnx_cache):
    _, backbone = backbones("bert")
    folder = cached_graph(backbone, Engine(backbone).table.layout, onnx_cache).parent
    expected = _meta_without_digests(folder)
    assert _verified(folder, expected)
    assert not _verified(folder, {**expected, "exporter_version": "0"})
    assert not _verified(folder, {**expected, "fingerprint": "0" * 64})


def _planted(cache, good, how: str):
    """A cache entry planted by someone who can write the cache folder (``good``: a genuine entry)."""
    entry = cache / good.name
    if how == "entry is a symlink":
        entry.symlink_to(good, target_is_directory=True)
        return
    shutil.copytree(good, entry)
    meta = json.loads((entry / "meta.json").read_text())
    if how == "meta names a path outside the cache":
        meta["sha256"]["../../../../../../../../dev/zero"] = "0" * 64
    elif how == "meta names an absolute path":
        meta["sha256"]["/dev/zero"] = "0" * 64
    elif how == "graph is a symlink":
        (entry / "encoder.onnx").unlink()
        (entry / "encoder.onnx").symlink_to(good / "encoder.onnx")
    (entry / "meta.json").write_text(json.dumps(meta))
    if how == "lock is a symlink":
        (cache / f"{good.name}.lock").symlink_to(good / "meta.json")


@pytest.mark.parametrize("how", ["meta names a path outside the cache", "meta names an absolute path", "entry is a symlink",
                                 "graph is a symlink", "lock is a symlink"])
def test_a_planted_cache_entry_is_never_followed_and_is_exported_again(backbones, onnx_cache, tmp_path, how):
    import threading

    _, backbone = backbones("bert")
    layout = Engine(backbone).table.layout
    good = cached_graph(backbone, layout, onnx_cache).parent
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    cache = tmp_path / "cache"
    cache.mkdir()
    _planted(cache, good, how)
    found = []
    worker = threading.Thread(target=lambda: found.append(cached_graph(backbone, layout, cache)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert found, "cached_graph hung or failed on a planted entry (reading /dev/zero?)"
    path = found[0]
    if how != "lock is a symlink":  # a valid entry behind a plain lock is a hit; any other is exported afresh
        assert not path.parent.is_symlink() and not path.is_symlink()
    assert path.parent.parent == cache and path.read_bytes() == (good / "encoder.onnx").read_bytes()
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before  # nothing outside the cache was touched
    assert not (cache / f"{good.name}.lock").is_symlink()


def _meta_without_digests(folder):
    meta = json.loads((folder / "meta.json").read_text())
    meta.pop("sha256")
    return meta


def test_int8_stays_close_to_fp32(backbones, onnx_cache):
    _, backbone = backbones("bert")
    fp32, int8 = ort_engine(backbone, onnx_cache), ort_engine(backbone, onnx_cache, "int8")
    assert int8.backend == "onnxruntime-int8"
    for engine in (fp32, int8):
        engine.register(random_bias_set(backbone.spec, "t", seed=9, scale=0.1))
    a = torch.tensor([p.logits for p in fp32.predict("t", TEXTS)])
    b = torch.tensor([p.logits for p in int8.predict("t", TEXTS)])
    assert not torch.equal(a, b)  # the quantized graph really ran
    torch.testing.assert_close(b, a, atol=0.1, rtol=0.1)


def test_backend_choice():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("auto", cpu) == "onnxruntime"  # installed in this suite (importorskip above)
    assert resolve_backend("auto", gpu) == "torch"
    assert resolve_backend("torch", cpu) == "torch"
    with pytest.raises(ValueError, match="on the CPU"):
        resolve_backend("onnxruntime", gpu)
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("tensorrt", cpu)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
def test_the_graph_comes_from_the_torchscript_exporter(backbones, onnx_cache, model_type):
    """Its graph costs less CPU per forward under ONNX Runtime than the dynamo exporter's
    (docs/benchmarks/request_path.md); the dynamo exporter is only the fallback. Each of
    these runs packed batches (engine.packing; tests/engine/test_packing.py)."""
    exporter = "torchscript-packed"
    _, backbone = backbones(model_type)
    layout = Engine(backbone).table.layout
    meta = json.loads((cached_graph(backbone, layout, onnx_cache).parent / "meta.json").read_text())
    assert meta["exporter"] == exporter and meta["opset"] == 17
    assert ort_engine(backbone, onnx_cache).runner.packs == exporter.endswith("packed")


def test_the_dynamo_exporter_takes_over_when_torchscript_fails(backbones, tmp_path, monkeypatch):
    from engine.runners import onnx_export

    def broken(*args, **kwargs):
        raise RuntimeError("no TorchScript exporter here")

    monkeypatch.setattr(onnx_export, "_export_torchscript", broken)
    _, backbone = backbones("bert")
    engine = ort_engine(backbone, tmp_path / "cache")
    meta = json.loads(next((tmp_path / "cache").glob("*/meta.json")).read_text())
    assert meta["exporter"] == "dynamo"
    bs = random_bias_set(backbone.spec, "t", ["a", "b"], seed=1)
    engine.register(bs)
    handle = engine.get("t")
    got = engine.run([(handle, row) for row in engine.encode(handle, TEXTS)])
    want = Engine(backbone)
    want.register(bs)
    expected = want.run([(want.get("t"), row) for row in want.encode(want.get("t"), TEXTS)])
    assert [p.label for p in got] == [p.label for p in expected]
    for a, b in zip(got, expected):
        assert abs(a.score - b.score) < 1e-4


@pytest.mark.parametrize("spin", [False, True])
def test_spinning_is_the_sessions_setting_and_changes_no_answer(backbones, onnx_cache, spin):
    """BITFIT_ONNX_SPIN reaches ONNX Runtime's session; the logits are the same either way."""
    base, backbone = backbones("bert")
    engine = Engine(backbone, onnx=OnnxOptions(onnx_cache, threads=2, spin=spin))
    options = engine.runner.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spin else "0")
    bs = random_bias_set(backbone.spec, "t", seed=7)
    engine.register(bs)
    torch.testing.assert_close(torch.stack(engine.logits([(engine.get("t"), r) for r in engine.encode(engine.get("t"), TEXTS)])),
                               reference_logits(base, bs, TEXTS), atol=1e-4, rtol=0)
