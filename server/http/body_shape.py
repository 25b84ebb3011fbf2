"""A JSON body's shape bounded before it is parsed: no request can make the server build
millions of objects (or millions of validation errors) out of one megabyte.

``json.loads`` makes one object per value, and the schema check then one error per bad
value: 500,000 ``0``s in a 1 MB body held the event loop for seconds and left a gigabyte
behind. Counting bytes is far cheaper than parsing them, so the body is counted first:

- strings: every string has an opening quote that no backslash precedes, so
  ``count('"') - count('\\"')`` is at least the number of strings and at most twice it;
- other values: each is preceded by ``[``, ``,`` or ``:``; those characters are counted
  outside strings (inside a string they are text; only bodies with many of them pay for
  finding the strings, and those have few strings by the first check).

A legitimate request has at most ``max_inputs`` inputs, so both counts have small bounds.
"""

from __future__ import annotations

import re

from server.exceptions import LimitExceeded

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # one JSON string, escapes included
_SEPARATORS = (b"[", b",", b":")


def bounds(max_inputs: int) -> tuple[int, int]:
    """(strings, other values) a valid predict body can hold, with room for every option."""
    # Per input at most a pair object: 2 keys + 2 texts; per item 5 keys/values more, and
    # there are at most max_inputs items (each has an input).
    return 11 * max_inputs + 16, 8 * max_inputs + 16


def check_json_shape(body: bytes, max_strings: int, max_values: int) -> None:
    """Raise LimitExceeded when ``body`` holds more JSON values than a valid request can."""
    strings_at_least_half = body.count(b'"') - body.count(b'\\"')
    if strings_at_least_half > 2 * max_strings:
        raise LimitExceeded(f"the body holds more than {max_strings} JSON strings; a valid request holds fewer "
                            "(BITFIT_MAX_INPUTS_PER_REQUEST)")
    separators = sum(body.count(s) for s in _SEPARATORS)
    if separators <= max_values + max_strings:
        return  # the common case: a handful of values, nothing more to look at
    for match in _STRING.finditer(body):  # at most 2 * max_strings of them
        text = match.group()
        separators -= sum(text.count(s) for s in _SEPARATORS)
    if separators > max_values + max_strings:
        raise LimitExceeded(f"the body holds about {separators} JSON values; a valid request holds at most "
                            f"{max_values + max_strings} (BITFIT_MAX_INPUTS_PER_REQUEST)")
