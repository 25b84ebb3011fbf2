"""The worker: good specs to done/, bad ones to failed/, leftovers resumed, and the stream property."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from bias_store import FilesystemStore, dumps, fingerprint, validate_upload
from bias_store.format import loads
from engine import Engine
from tests.helpers import random_bias_set
from tests.training.test_bitfit import TEXTS, sentiment_csv
from training.publish import Target
from training.worker import Worker


def make_store(path, spec):
    return FilesystemStore(path)


def good_spec(inbox, name, **extra):
    sentiment_csv(inbox / f"{name}.csv", n=32)
    return {"name": name, "train": f"{name}.csv", "text_column": "text", "label_column": "label",
            "epochs": 1, "batch_size": 8, **extra}


DONE_DOC = (Path(__file__).resolve().parents[2] / "docs" / "TRAINING.md").read_text().split("inbox/done/<name>/")[1][:400]


def test_worker_moves_good_specs_to_done_and_bad_ones_to_failed(tmp_path, tiny_bert_dir, tiny_backbone):
    inbox = tmp_path / "inbox"
    (inbox / "processing").mkdir(parents=True)
    (inbox / "good.yaml").write_text("name: good\ntrain: good.csv\ntext_column: text\nlabel_column: label\nepochs: 1\nbatch-size: 8\n")
    sentiment_csv(inbox / "good.csv", n=32)
    (inbox / "bad-column.json").write_text(json.dumps({**good_spec(inbox, "badcol"), "text_column": "sentence"}))
    (inbox / "broken.yaml").write_text("name: [unclosed\n")
    (inbox / "unknown.json").write_text(json.dumps({**good_spec(inbox, "unk"), "learning_rate": 1}))
    # A spec claimed before a crash: the restarted worker trains it first.
    (inbox / "processing" / "leftover.json").write_text(json.dumps(good_spec(inbox, "leftover", pooling="mean")))
    (inbox / "notes.txt").write_text("not a spec")

    store = make_store(tmp_path / "store", tiny_backbone.spec)
    worker = Worker(inbox, Target(store=str(tmp_path / "store")), defaults={"backbone": str(tiny_bert_dir)}, settle_seconds=0)
    results = worker.run_once()

    assert results[0].spec == "leftover.json" and results[0].ok
    by_name = {r.spec: r for r in results}
    assert {n for n, r in by_name.items() if r.ok} == {"leftover.json", "good.yaml"}
    assert {n for n, r in by_name.items() if not r.ok} == {"bad-column.json", "broken.yaml", "unknown.json"}
    spec_suffix = {"good": "yaml", "leftover": "json"}
    for name in ("good", "leftover"):
        done = inbox / "done" / name
        # Exactly what docs/TRAINING.md says done/ holds (single-label: a confusion matrix; no per-label plot).
        files = {"report.json", "learning_curves.png", "confusion_matrix.png", "result.json", f"{name}.{spec_suffix[name]}"}
        assert {p.name for p in done.iterdir()} == files
        for file in files - {f"{name}.{spec_suffix[name]}"}:
            assert f"`{file}`" in DONE_DOC
        assert json.loads((done / "result.json").read_text())["published"]["task"] == name
    assert "column 'sentence' is missing" in (inbox / "failed" / "bad-column" / "error.txt").read_text()
    assert "not valid YAML" in (inbox / "failed" / "broken" / "error.txt").read_text()
    assert "unknown spec fields ['learning_rate']" in (inbox / "failed" / "unknown" / "error.txt").read_text()
    assert (inbox / "failed" / "broken" / "broken.yaml").exists()
    assert not list((inbox / "processing").iterdir()) and (inbox / "notes.txt").exists()
    assert sorted(r.name for r in store.list()) == ["good", "leftover"]
    assert store.get("leftover")[0].meta.pooling == "mean"
    assert worker.run_once() == []  # nothing is trained twice


def test_stream_property_old_tasks_stay_bit_identical(tmp_path, tiny_bert_dir, tiny_backbone):
    """Tasks arrive one after another; what every earlier task computes never changes."""
    store = make_store(tmp_path / "store", tiny_backbone.spec)
    for i in range(2):
        old = random_bias_set(tiny_backbone.spec, f"old-{i}", seed=i, pooling=("cls", "mean")[i])
        store.put(validate_upload(dumps(old), tiny_backbone.spec))
    engine = Engine(tiny_backbone)
    backbone_before = fingerprint(tiny_backbone.encoder)

    def serve_all() -> dict[str, torch.Tensor]:
        for record in store.list():
            if record.name not in engine.tasks() or engine.get(record.name).sha256 != record.sha256:
                engine.register(loads(store.get(record.name)[1]), record.version, record.sha256)
        return {name: torch.tensor([p.logits for p in engine.predict(name, TEXTS)]) for name in engine.tasks()}

    before = serve_all()
    states = [store.state()]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    worker = Worker(inbox, Target(store=str(tmp_path / "store")), defaults={"backbone": str(tiny_bert_dir)}, settle_seconds=0)
    for k, method in enumerate(("bitfit", "bitfit-qm")):  # two arrivals, each published, then served
        (inbox / f"new-{k}.json").write_text(json.dumps(good_spec(inbox, f"new-{k}", method=method, seed=k)))
        assert [r.ok for r in worker.run_once()] == [True]
        after = serve_all()
        assert set(after) == set(before) | {f"new-{j}" for j in range(k + 1)}
        for name, logits in before.items():
            assert torch.equal(after[name], logits), f"{name} changed after new-{k} arrived"
        states.append(store.state())
        assert all(states[-1][n] == states[0][n] for n in states[0])  # old files untouched
    assert fingerprint(tiny_backbone.encoder) == backbone_before
    for record in store.list():
        assert record.meta.backbone_fingerprint == backbone_before


def test_relative_paths_resolve_against_the_inbox(tmp_path, tiny_bert_dir):
    inbox = tmp_path / "inbox"
    (inbox / "data").mkdir(parents=True)
    pd.DataFrame({"t": ["good", "bad"] * 10, "y": [1, 0] * 10}).to_csv(inbox / "data" / "d.csv", index=False)
    (inbox / "a.json").write_text(json.dumps({"name": "rel", "train": "data/d.csv", "text_column": "t", "label_column": "y", "epochs": 1}))
    worker = Worker(inbox, Target(out=str(tmp_path / "rel.safetensors")), defaults={"backbone": str(tiny_bert_dir)}, settle_seconds=0)
    [result] = worker.run_once()
    assert result.ok, result.error
    assert loads((tmp_path / "rel.safetensors").read_bytes()).meta.labels == ["0", "1"]


def test_a_failed_push_keeps_bias_set_report_and_plot_in_failed(tmp_path, tiny_bert_dir, tiny_backbone):
    from bitfit_client import Retry

    from tests.server_support import live_server

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "pushed.json").write_text(json.dumps(good_spec(inbox, "pushed")))
    # The server answers and takes the (absent) key, but its upload limit refuses the file.
    with live_server(tmp_path / "served", tiny_backbone, max_upload_bytes=100) as url:
        target = Target(push=url, retry=Retry(attempts=2, backoff_s=0.01))
        (result,) = Worker(inbox, target, defaults={"backbone": str(tiny_bert_dir)}, settle_seconds=0).run_once()
    failed = inbox / "failed" / "pushed"
    assert not result.ok and "413" in result.error and str(failed / "pushed.safetensors") in result.error
    assert {p.name for p in failed.iterdir()} >= {"pushed.safetensors", "report.json", "learning_curves.png", "error.txt"}
    assert loads((failed / "pushed.safetensors").read_bytes()).meta.task == "pushed"
