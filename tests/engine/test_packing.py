"""Packed batches: several rows per sequence, each row's answer the padded forward's."""

import random

import numpy as np
import pytest
import torch

from engine.packing import PACK_WIDTH, bins_for, pack, unpack

pytest.importorskip("onnxruntime")

from engine import Engine  # noqa: E402
from engine.runners import onnx_export, onnx_packed  # noqa: E402
from engine.runners.ort import OnnxOptions  # noqa: E402
from tests.helpers import random_bias_set  # noqa: E402


def padded(lengths, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(5, 1000, n)
        mask[i, :n] = 1
    return ids, mask


def test_rows_pack_into_fewer_sequences_and_come_back_in_place():
    lengths = [9, 3, 17, 5, 11, 2, 8, 14, 6, 10]
    ids, mask = padded(lengths)
    types = mask * (np.arange(ids.shape[1]) % 2)
    p = pack(ids, mask, types)
    assert p.bins < len(lengths) and p.feeds["input_ids"].shape[1] <= PACK_WIDTH
    assert p.bins * p.feeds["input_ids"].shape[1] < ids.size  # fewer token slots than padded
    back = unpack(p.feeds["input_ids"][..., None], p)[..., 0]  # [rows, seq]
    back_types = unpack(p.feeds["token_type_ids"][..., None], p)[..., 0]
    seg, pos = unpack(p.feeds["segment"][..., None], p)[..., 0], unpack(p.feeds["position_ids"][..., None], p)[..., 0]
    for i, n in enumerate(lengths):
        assert back[i, :n].tolist() == ids[i, :n].tolist() and back_types[i, :n].tolist() == types[i, :n].tolist()
        assert seg[i, :n].tolist() == [i] * n and pos[i, :n].tolist() == list(range(n))
        assert p.feeds["input_ids"].reshape(-1)[p.feeds["first"][i]] == ids[i, 0]


def test_a_token_attends_to_its_own_row_only():
    ids, mask = padded([4, 3, 6, 2])
    p = pack(ids, mask, width=8)
    m = p.feeds["attention_mask"][:, 0]  # [bins, width, width]
    flat = p.index  # [rows, seq] -> flat position
    width = m.shape[1]
    where = {(i, t): divmod(int(flat[i, t]), width) for i in range(4) for t in range(int(mask[i].sum()))}
    for (i, _), (b, q) in where.items():
        for (j, _), (b2, k) in where.items():
            if b == b2:
                assert m[b, q, k] == (i == j)
    assert m.any(axis=2).all()  # every query (padding too) sees some key: no empty softmax row


def test_one_long_row_among_short_ones_keeps_the_padded_layout_when_packing_saves_nothing():
    ids, mask = padded([40, 40, 39])  # three rows that fit no shared bin
    p = pack(ids, mask)
    assert p.bins == 3 and p.feeds["input_ids"].shape[1] == 40
    assert bins_for([20, 3, 3, 3], 32) == [[0, 1, 2, 3]]
    assert bins_for([60, 20, 20, 20], 32) == [[0], [1, 2, 3]]  # a longer row widens every bin


def test_packed_engine_equals_the_padded_torch_engine_on_mixed_lengths_and_tasks(tiny_backbone, onnx_cache):
    """Rows of every length (one longer than a bin), random tasks, both poolings, text pairs."""
    ort, eager = Engine(tiny_backbone, onnx=OnnxOptions(onnx_cache)), Engine(tiny_backbone)
    assert ort.runner.packs
    for engine in (ort, eager):
        for i in range(5):
            engine.register(random_bias_set(tiny_backbone.spec, f"t{i}", seed=i, pooling="mean" if i % 2 else "cls"))
        engine.register(random_bias_set(tiny_backbone.spec, "pairs", seed=9, inputs="text_pair"))
    rng = random.Random(1)
    words = "a gorgeous witty film dull and lifeless mess not bad at all the cast is wonderful".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.choice([1, 3, 6, 12, 45]))) for _ in range(24)]
    shapes = []
    run = ort.runner.session.run
    ort.runner.session.run = lambda out, feeds: shapes.append(feeds["input_ids"].shape) or run(out, feeds)

    def rows(engine):
        got = [(engine.get(f"t{i % 5}"), engine.encode(engine.get(f"t{i % 5}"), [t])[0]) for i, t in enumerate(texts)]
        pairs = engine.encode(engine.get("pairs"), [[texts[0], texts[1]], [texts[2], texts[3]]])
        return got + [(engine.get("pairs"), r) for r in pairs]

    got, want = torch.stack(ort.logits(rows(ort))), torch.stack(eager.logits(rows(eager)))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert len(shapes) == 1 and shapes[0][0] < len(texts)  # one forward, fewer sequences than rows


def test_an_encoder_that_packs_wrongly_is_served_padded(tiny_backbone, tmp_path, monkeypatch):
    """The probe compares packed and padded states before anything is exported: positions off
    by one (as a RoBERTa-style offset read wrongly would be) fail it, and the graph pads."""
    layout = Engine(tiny_backbone).table.layout
    pad = tiny_backbone.tokenizer.pad_token_id or 0
    assert onnx_packed.packs_exactly(tiny_backbone.encoder, layout, pad, with_types=True)
    init = onnx_packed.PackedEncoder.__init__

    def shifted(self, encoder, layout):
        init(self, encoder, layout)
        self.position_offset += 1

    monkeypatch.setattr(onnx_packed.PackedEncoder, "__init__", shifted)
    assert not onnx_packed.packs_exactly(tiny_backbone.encoder, layout, pad, with_types=True)
    ort, eager = Engine(tiny_backbone, onnx=OnnxOptions(tmp_path)), Engine(tiny_backbone)
    assert not ort.runner.packs
    for engine in (ort, eager):
        engine.register(random_bias_set(tiny_backbone.spec, "a", seed=3))
    texts = ["a gorgeous, witty film", "meh", "the plot twists kept me guessing until the very last scene"]
    torch.testing.assert_close(torch.tensor([p.logits for p in ort.predict("a", texts)]),
                               torch.tensor([p.logits for p in eager.predict("a", texts)]), atol=1e-4, rtol=0)


def test_a_failed_packed_export_falls_back_to_a_padded_graph(tiny_backbone, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter could not trace it")

    monkeypatch.setattr(onnx_export, "_export_packed", broken)
    engine = Engine(tiny_backbone, onnx=OnnxOptions(tmp_path))
    assert not engine.runner.packs
    engine.register(random_bias_set(tiny_backbone.spec, "a", seed=3))
    assert len(engine.predict("a", ["fine", "a dull and lifeless mess"])) == 2


def test_pack_off_exports_a_padded_graph_with_the_same_answers(tiny_backbone, onnx_cache, monkeypatch):
    """BITFIT_ONNX_PACK=0 (settings.onnx_pack) reaches the export: a graph of its own, padded."""
    from server.process.settings import Settings

    monkeypatch.setenv("BITFIT_ONNX_PACK", "0")
    assert Settings().onnx_pack is False
    packed, padded = Engine(tiny_backbone, onnx=OnnxOptions(onnx_cache)), Engine(tiny_backbone, onnx=OnnxOptions(onnx_cache, pack=False))
    assert packed.runner.packs and not padded.runner.packs
    texts = ["a gorgeous, witty film", "meh", "the plot twists kept me guessing until the very last scene"]
    for engine in (packed, padded):
        engine.register(random_bias_set(tiny_backbone.spec, "a", seed=4, pooling="mean"))
    torch.testing.assert_close(torch.tensor([p.logits for p in packed.predict("a", texts)]),
                               torch.tensor([p.logits for p in padded.predict("a", texts)]), atol=1e-4, rtol=0)
