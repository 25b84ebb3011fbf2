"""The engine's row tokenizer (``RowTokenizer``) gives exactly transformers' rows (``encode``)."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from engine.backbone import default_backbone_path
from engine.inputs import RowTokenizer, encode

LONG = "the plot twists kept me guessing until the very last scene of the movie, " * 12
TEXTS = ["a gorgeous, witty film", "meh", "  spaced   out  ", "Ünïcödé — naïve café 🎬 映画", "[SEP] [CLS] <s></s> tags",
         "not bad at all", LONG, "x" * 600]
PAIRS = [("is it good?", "a gorgeous, witty film"), (LONG, "short"), ("short", LONG), (LONG, LONG[::-1])]


def byte_level_bpe() -> PreTrainedTokenizerFast:
    """A RoBERTa-style tokenizer (byte-level BPE, <s> </s> pairs, no token types), trained here: no download."""
    from tokenizers import ByteLevelBPETokenizer, processors

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS * 20 + [a + " " + b for a, b in PAIRS], vocab_size=400,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    bpe._tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", pad_token="<pad>", unk_token="<unk>", model_input_names=["input_ids", "attention_mask"])


def tokenizers():
    minilm = AutoTokenizer.from_pretrained(str(default_backbone_path()))
    left = AutoTokenizer.from_pretrained(str(default_backbone_path()))
    left.truncation_side = "left"
    return {"minilm": minilm, "minilm-left": left, "byte-level-bpe": byte_level_bpe()}


@pytest.mark.parametrize("name", ["minilm", "minilm-left", "byte-level-bpe"])
@pytest.mark.parametrize("max_length", [16, 128])
def test_rows_equal_transformers_rows(name, max_length):
    hf = tokenizers()[name]
    rows = RowTokenizer(hf, max_length)
    for inputs in [TEXTS, PAIRS, *([t] for t in TEXTS), *([p] for p in PAIRS)]:
        want = encode(hf, inputs, max_length)
        got = rows(inputs)
        assert got == want, (name, inputs[0][:20])
    truncated = rows([LONG, "meh"])
    assert truncated[0].truncated and not truncated[1].truncated and len(truncated[0]) == max_length
    assert (rows(["meh"])[0].token_type_ids is None) == (name == "byte-level-bpe")


def test_its_settings_do_not_follow_later_calls_of_the_transformers_tokenizer():
    hf = tokenizers()["minilm"]
    rows = RowTokenizer(hf, 16)
    hf([LONG], truncation=True, max_length=64, padding="max_length")  # re-sets the Rust tokenizer hf owns, not the copy
    assert len(rows([LONG])[0]) == 16 and len(rows(["meh"])[0]) < 16
