"""`bitfit train` end to end on the tiny backbone: --out, --store, --push to a real server."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from bitfit_client import Retry

from bias_store import FilesystemStore, validate_bytes
from bias_store.format import loads
from server.process.cli import main
from tests.helpers import free_port, save_tiny_backbone, wait_until
from tests.server_support import live_server as serve_live
from tests.training.test_bitfit import TEXTS, sentiment_csv
from training.errors import PublishError
from training.publish import Target, publish

API_KEY = "test-admin-key-0123456789"


def train_args(tmp_path, tiny_bert_dir, *extra):
    train = sentiment_csv(tmp_path / "train.csv", n=32)
    return ["train", "--train", str(train), "--text-column", "text", "--label-column", "label", "--task", "cli-task",
            "--backbone", str(tiny_bert_dir), "--epochs", "1", "--batch-size", "8", "--device", "cpu",
            "--run-dir", str(tmp_path / "run"), "--no-progress", *extra]


def test_train_out_and_store(tmp_path, tiny_bert_dir, tiny_backbone, capsys):
    out = tmp_path / "task.safetensors"
    assert main(train_args(tmp_path, tiny_bert_dir, "--out", str(out), "--pooling", "mean", "--seed", "7")) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["published"]["path"] == str(out) and summary["best_epoch"] == 1
    bias_set = validate_bytes(out.read_bytes(), tiny_backbone.spec)
    assert bias_set.meta.task == "cli-task" and bias_set.meta.pooling == "mean" and bias_set.meta.training["seed"] == 7
    assert (tmp_path / "run" / "report.json").exists() and (tmp_path / "run" / "learning_curves.png").exists()
    # The backbone by name, not this machine's path (fingerprints match bias sets to backbones).
    assert bias_set.meta.base_model == tiny_bert_dir.name
    assert json.loads((tmp_path / "run" / "report.json").read_text())["config"]["backbone"] == tiny_bert_dir.name

    store_dir = tmp_path / "store"
    assert main(train_args(tmp_path, tiny_bert_dir, "--store", str(store_dir), "--method", "bitfit-qm")) == 0
    store = FilesystemStore(store_dir)
    record, _ = store.get("cli-task")
    assert record.meta.bias_sites == "query_intermediate" and record.version == 1


def test_train_store_s3_publishes_to_a_real_s3(tmp_path, tiny_bert_dir, seaweedfs, monkeypatch, capsys):
    """`bitfit train --store s3://...` publishes through open_store, as the server reads it."""
    from bias_store import open_store
    from tests.seaweedfs import BUCKET, CREDENTIALS

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    url = f"s3://{BUCKET}/train-{tmp_path.name}"
    assert main(train_args(tmp_path, tiny_bert_dir, "--store", url, "--s3-endpoint-url", seaweedfs.endpoint)) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["published"]["store"] == url and summary["published"]["version"] == 1
    record, _ = open_store(url, s3_endpoint_url=seaweedfs.endpoint).get("cli-task")
    assert record.version == 1 and record.sha256 == summary["published"]["sha256"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text-column", "sentence", "--out", "x.safetensors"], "column 'sentence' is missing"),
        (["--method", "full", "--out", "x.safetensors"], "--method full is a baseline"),
        ([], "give exactly one of --out FILE, --store DIR, --push URL"),
        (["--task", "Not OK", "--out", "x.safetensors"], "task name 'Not OK' is invalid"),
        (["--push", "localhost:1"], "--push needs a server URL"),
        (["--push", "http://127.0.0.1:1"], "cannot reach the server http://127.0.0.1:1"),
        (["--backbone", "/no/such/folder", "--out", "x.safetensors"], "--backbone: no such folder: /no/such/folder"),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(tmp_path, tiny_bert_dir, capsys, extra, message):
    assert main(train_args(tmp_path, tiny_bert_dir, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # it failed before training


@pytest.fixture
def live_server(tmp_path, tiny_bert_dir, tiny_backbone):
    """The real app (server.http.app.create_app) on a free port, admin key required."""
    import uvicorn

    from server.http.app import create_app
    from server.process.settings import Settings

    port = free_port()
    settings = Settings(port=port, store=tmp_path / "served", backbone=str(tiny_bert_dir), device="cpu", api_keys=[API_KEY])
    server = uvicorn.Server(uvicorn.Config(create_app(settings, backbone=tiny_backbone), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, timeout=60)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_push_uploads_to_a_running_server(tmp_path, tiny_bert_dir, tiny_backbone, live_server, monkeypatch, capsys):
    import httpx

    out = tmp_path / "t.safetensors"
    assert main(train_args(tmp_path, tiny_bert_dir, "--out", str(out))) == 0
    bias_set = loads(out.read_bytes())
    with pytest.raises(PublishError, match="401"):
        publish(bias_set, tiny_backbone.spec, Target(push=live_server))
    monkeypatch.setenv("BITFIT_API_KEY", API_KEY)
    assert main(train_args(tmp_path, tiny_bert_dir, "--push", live_server)) == 0
    published = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["published"]
    assert published["status"] == 201
    response = httpx.post(f"{live_server}/predict/cli-task", json={"inputs": TEXTS[:2]}, timeout=30)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2
    with pytest.raises(PublishError, match="could not reach"):
        publish(bias_set, tiny_backbone.spec, Target(push="http://127.0.0.1:1", retry=Retry(attempts=2, backoff_s=0.01)))


def test_push_checks_key_and_backbone_before_training(tmp_path, tiny_bert_dir, live_server, monkeypatch, capsys):
    monkeypatch.setenv("BITFIT_API_KEY", "not-the-admin-key-000")
    assert main(train_args(tmp_path, tiny_bert_dir, "--push", live_server)) == 2
    assert "refuses this key for uploads" in capsys.readouterr().err and not (tmp_path / "run").exists()

    monkeypatch.setenv("BITFIT_API_KEY", API_KEY)
    other = save_tiny_backbone(tmp_path / "other-bert", seed=1)  # same shapes, other weights
    assert main(train_args(tmp_path, other, "--push", live_server)) == 2
    err = capsys.readouterr().err
    assert "serves another backbone" in err and "Traceback" not in err and not (tmp_path / "run").exists()


def test_a_failed_push_keeps_the_bias_set(tmp_path, tiny_bert_dir, tiny_backbone, capsys):
    # The server takes the key but its upload limit refuses the file: found only after training.
    with serve_live(tmp_path / "small", tiny_backbone, max_upload_bytes=100) as url:
        assert main(train_args(tmp_path, tiny_bert_dir, "--push", url)) == 2
    err = capsys.readouterr().err
    kept = tmp_path / "run" / "cli-task.safetensors"
    assert "413" in err and f"the bias set is saved at {kept}" in err
    assert validate_bytes(kept.read_bytes(), tiny_backbone.spec).meta.task == "cli-task"


def test_training_is_deterministic_per_seed(tmp_path, tiny_bert_dir, tiny_backbone):
    """Two runs with one seed write identical files (so a report can be reproduced)."""
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert main(train_args(tmp_path, tiny_bert_dir, "--out", str(a))) == 0
    assert main(train_args(tmp_path, tiny_bert_dir, "--out", str(b))) == 0
    ta, tb = loads(a.read_bytes()).tensors, loads(b.read_bytes()).tensors
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)  # training is deterministic per seed


def _all_parsers():
    from server.process import cli

    top, _ = cli.build_parser(cli.SUBCOMMANDS)
    subs = next(a for a in top._actions if a.__class__.__name__ == "_SubParsersAction")
    return {"bitfit": top, **{f"bitfit {name}": p for name, p in subs.choices.items()}}


def test_every_flag_has_help_and_shows_its_default(capsys):
    for name, parser in _all_parsers().items():
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings[0]} has no help text"
        text = parser.format_help()
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, "==SUPPRESS==") and action.dest != "version":
                assert f"default: {action.default}" in text.replace("\n", " ").replace("  ", " ") or "default" in action.help, (
                    f"{name} {action.option_strings[0]}: the default is not shown"
                )
    assert "(default: 600)" in _all_parsers()["bitfit train"].format_help()  # --min-steps


def test_version_options_on_the_subcommand_and_unknown_variables(capsys, monkeypatch):
    from server.process import cli

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip().startswith("bitfit ")
    assert cli.unknown_variables({"BITFIT_MAX_BATCH_ROW": "3", "BITFIT_PORT": "1", "OTHER": "x"}) == [
        "BITFIT_MAX_BATCH_ROW is not a bitfit setting and is ignored; did you mean BITFIT_MAX_BATCH_ROWS?"
    ]
    assert cli.unknown_variables({"BITFIT_API_KEY": "k", "BITFIT_LOG_FORMAT": "json", "BITFIT_BENCH_CACHE": "/c"}) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["serve", "--log-level", "DEBUG", "--backbone", "/no/such/folder"], "--backbone / BITFIT_BACKBONE: no such folder: /no/such"),
        (["serve", "--backbone", "org/model"], "the hub is offline"),
        (["serve", "--device", "cpu", "--dtype", "float16"], "--dtype / BITFIT_DTYPE: float16 needs a GPU"),
        (["serve", "--port", "99999"], "--port / BITFIT_PORT: Input should be less than or equal to 65535"),
    ],
)
def test_bad_serve_settings_fail_before_loading_in_one_line(argv, message, capsys, tiny_bert_dir):
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE  # conftest: nothing reaches the hub
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_multi_label_training_is_served_with_a_sigmoid_per_label(tmp_path, tiny_bert_dir, tiny_backbone, capsys):
    import pandas as pd

    from engine import Engine

    rows = [{"text": f"row {i} about {' and '.join(t)}", "tags": ",".join(t)}
            for i, t in enumerate([["sport"], ["politics", "money"], ["money"], ["sport", "money"]] * 8)]
    pd.DataFrame(rows).to_csv(tmp_path / "tags.csv", index=False)
    out = tmp_path / "tags.safetensors"
    argv = ["train", "--train", str(tmp_path / "tags.csv"), "--text-column", "text", "--label-column", "tags",
            "--problem-type", "multi-label", "--task", "tags", "--backbone", str(tiny_bert_dir), "--epochs", "1",
            "--batch-size", "8", "--device", "cpu", "--run-dir", str(tmp_path / "run"), "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"micro_f1", "macro_f1", "exact_match"} <= set(summary["validation"])
    bias_set = validate_bytes(out.read_bytes(), tiny_backbone.spec)
    assert bias_set.meta.problem_type == "multi_label_classification" and bias_set.meta.labels == ["money", "politics", "sport"]
    engine = Engine(tiny_backbone)
    engine.register(bias_set)
    (prediction,) = engine.predict("tags", ["row about money"])
    scores = torch.tensor(list(prediction.scores.values()))
    assert torch.allclose(scores, torch.tensor(prediction.logits).sigmoid(), atol=1e-6)
