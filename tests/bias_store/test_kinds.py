"""Problem type, input kind and pooling: one enum each, read from and written to the header as strings."""

import json

import pytest

from bias_store import InvalidBiasSet, dumps, loads
from bias_store.format import BiasSetMeta, read_header
from bias_store.kinds import InputKind, Pooling, ProblemType
from tests.helpers import random_bias_set


def test_metadata_choices_are_enum_members_and_stay_plain_strings_in_the_file(tiny_backbone):
    bias_set = random_bias_set(tiny_backbone.spec, "k", pooling="mean")
    data = dumps(bias_set)
    meta = loads(data).meta
    assert meta.pooling is Pooling.MEAN and meta.inputs is InputKind.TEXT and meta.problem_type is ProblemType.SINGLE_LABEL
    header = read_header(data)["__metadata__"]
    assert (header["pooling"], header["inputs"], header["problem_type"]) == ("mean", "text", "single_label_classification")
    assert json.dumps({"p": Pooling.MEAN}) == '{"p": "mean"}' and f"{Pooling.CLS}" == "cls"


@pytest.mark.parametrize("field, allowed", [("pooling", Pooling), ("inputs", InputKind), ("problem_type", ProblemType)])
def test_an_unknown_choice_is_refused_naming_the_allowed_ones(tiny_backbone, field, allowed):
    bias_set = random_bias_set(tiny_backbone.spec, "k")
    header = {**bias_set.meta.to_header(), field: "bogus"}

    with pytest.raises(InvalidBiasSet) as info:
        BiasSetMeta.from_header(header)
    assert info.value.reason == "bad_metadata" and str(allowed.values()) in str(info.value)
