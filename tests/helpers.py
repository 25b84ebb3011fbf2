"""Shared test helpers: tiny random backbones and random bias sets (offline, seeded)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import torch

from bias_store.format import BiasSet, BiasSetMeta
from bias_store.spec import BackboneSpec

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, max_position_embeddings=128)


def save_tiny_backbone(path: Path, model_type: str = "bert", seed: int = 0) -> Path:
    """A tiny random encoder of ``model_type`` with the packaged MiniLM tokenizer, saved to ``path``."""
    from transformers import AutoModel, AutoTokenizer, BertConfig, DistilBertConfig, RobertaConfig

    from engine.backbone import default_backbone_path

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(default_backbone_path())
    vocab = tokenizer.vocab_size
    if model_type == "bert":
        config = BertConfig(vocab_size=vocab, **TINY)
    elif model_type == "roberta":
        config = RobertaConfig(vocab_size=vocab, pad_token_id=tokenizer.pad_token_id, **{**TINY, "max_position_embeddings": 130})
    elif model_type == "distilbert":
        config = DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=128)
    else:
        raise ValueError(model_type)
    model = AutoModel.from_config(config)
    # Make the base biases non-zero so a delta bug cannot hide behind zeros.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def random_bias_set(
    spec: BackboneSpec,
    name: str,
    labels: list[str] | None = None,
    seed: int = 0,
    subset: str = "all",
    pooling: str = "cls",
    problem_type: str = "single_label_classification",
    inputs: str = "text",
    scale: float = 0.5,
) -> BiasSet:
    """A bias set with random biases and head, valid for ``spec``."""
    labels = labels or ["negative", "positive"]
    g = torch.Generator().manual_seed(seed)
    tensors = {spec.site_key(site): torch.randn(spec.sites[site], generator=g) * scale for site in spec.site_names(subset)}
    for key, shape in spec.head_shapes(len(labels)).items():
        tensors[key] = torch.randn(*shape, generator=g) * scale
    meta = BiasSetMeta(
        task=name, labels=labels, base_model=spec.base_model, backbone_fingerprint=spec.fingerprint,
        model_type=spec.model_type, problem_type=problem_type, inputs=inputs, bias_sites=subset, pooling=pooling,
        training={"method": "random", "seed": seed},
    )
    return BiasSet(meta, tensors)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def reference_model(base_dir, bias_set: BiasSet):
    """The defining property: the plain transformers model with the bias set loaded on top."""
    from engine.backbone import load_classifier

    model = load_classifier(str(base_dir), num_labels=len(bias_set.meta.labels))
    missing, unexpected = model.load_state_dict(bias_set.tensors, strict=False)
    assert not unexpected, unexpected
    return model.eval()


def reference_logits(base_dir, bias_set: BiasSet, texts: list, device: str = "cpu") -> torch.Tensor:
    """Logits of the task's standalone transformers model, one text at a time (no padding), fp32 on ``device``."""
    from transformers import AutoTokenizer

    model = reference_model(base_dir, bias_set).to(device)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    out = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer(*(text if isinstance(text, tuple) else (text,)), return_tensors="pt", truncation=True)
            enc = {k: v.to(device) for k, v in enc.items()}
            if bias_set.meta.pooling == "cls":
                out.append(model(**enc).logits[0])
                continue
            # Mean pooling: the head reads the mask-weighted mean of the last hidden state.
            hidden = model.base_model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            head = model.classifier
            if hasattr(model, "pre_classifier"):  # DistilBERT
                pooled = torch.relu(model.pre_classifier(pooled))
            if hasattr(head, "out_proj"):  # RoBERTa-style heads take [batch, seq, hidden]
                out.append(head(pooled.unsqueeze(1))[0])
            else:
                out.append(head(pooled)[0])
    return torch.stack(out).cpu()
