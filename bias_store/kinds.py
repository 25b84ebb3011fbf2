"""The named choices a bias set's metadata makes: problem type, input kind and pooling.

Defined once here, the lowest layer that reads them; the engine, training, the server and
the benches use these members instead of spelling the strings. Members are ``str``s, so
they compare equal to, and serialize as, the values in a file's header.
"""

from __future__ import annotations

from enum import Enum


class _Choice(str, Enum):
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]


class ProblemType(_Choice):
    SINGLE_LABEL = "single_label_classification"  # softmax over the labels
    MULTI_LABEL = "multi_label_classification"  # a sigmoid per label
    REGRESSION = "regression"  # one raw output


class InputKind(_Choice):
    TEXT = "text"
    TEXT_PAIR = "text_pair"  # two texts encoded as one sequence (e.g. NLI)


class Pooling(_Choice):
    CLS = "cls"  # what the architecture's own classification head reads
    MEAN = "mean"  # the mask-weighted mean of the last hidden state
