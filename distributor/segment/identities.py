"""CleverTap's rules for what an identity may be.

CleverTap refuses an empty identity, one of 1024 characters or more, and a list of placeholder values (compared
without regard to case).  A member whose identity breaks these rules cannot receive the code as a profile property,
so publishing a code to it would waste a code and a call: such rows are skipped and reported instead.  So are two
kinds of value no system downstream can hold: one with a NUL character, and one with a lone UTF-16 surrogate (a JSON
export can spell ``"\\ud800"``; it has no UTF-8 form, so SQLite, the CSV and CleverTap cannot store it).  (A NUL
*byte* in the file refuses the whole file as binary, wherever it is; only a NUL spelled by a JSON escape or held by
a Parquet value reaches this check.)

Identities are otherwise exact strings: nothing here trims, re-cases or re-types them.  A value made only of
whitespace counts as empty (CleverTap would match it to nobody); the spaces around or inside any other value are
part of it and kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import compress, product

#: Values CleverTap refuses as an identity (CleverTap's identity documentation), lower-cased.
PLACEHOLDERS = frozenset(
    {
        "undefined", "null", "na", "n/a", "0", "nil", "-1", "infinity", "-infinity", "inf", "-inf",
        "nan", "-nan", "empty", "xxxxxx", "none",
    }
)
#: The longest identity CleverTap accepts, in characters: 1024 or more is refused.
MAX_LENGTH = 1023

# Reasons, as written in the skipped-rows report and counted in the summary.
EMPTY = "empty"
TOO_LONG = "too_long"
PLACEHOLDER = "placeholder"
CONTROL_CHARACTER = "control_character"
INVALID_UNICODE = "invalid_unicode"
DUPLICATE = "duplicate"

REASON_TEXT = {
    EMPTY: "empty identity (or only whitespace)",
    TOO_LONG: f"identity of {MAX_LENGTH + 1} characters or more",
    PLACEHOLDER: "a placeholder CleverTap refuses as identity",
    CONTROL_CHARACTER: "contains a NUL character",
    INVALID_UNICODE: "contains a lone UTF-16 surrogate, which has no UTF-8 form",
    DUPLICATE: "appears earlier in the segment; published once",
}

_SURROGATE = re.compile("[\ud800-\udfff]")
_NUL_OR_SURROGATE = re.compile("[\x00\ud800-\udfff]")


def invalid_reason(identity: str) -> str | None:
    """Why CleverTap would refuse ``identity`` (one of the reason codes above), or ``None`` when it is usable.

    A whitespace-only identity counts as empty: CleverTap would not match it to anyone.  Inner and surrounding
    spaces of a non-empty identity are kept as they are, because they are part of it.
    """
    if not identity or identity.isspace():
        return EMPTY
    if len(identity) > MAX_LENGTH:
        return TOO_LONG
    if identity.lower() in PLACEHOLDERS:
        return PLACEHOLDER
    if "\x00" in identity:
        return CONTROL_CHARACTER
    if not identity.isascii() and _SURROGATE.search(identity):
        return INVALID_UNICODE
    return None


def invalid_rows(values: Sequence[str]) -> list[tuple[int, str]]:
    """``(position, reason)`` of each of ``values`` that :func:`invalid_reason` refuses, in order.  A batch is
    sorted out by set operations and ``str`` methods over its distinct values (run in C), which find the invalid
    ones; one pass of set look-ups places them, and :func:`invalid_reason` gives each its reason."""
    distinct = set(values)
    refused = distinct & _PLACEHOLDER_SPELLINGS
    refused.update(filter(str.isspace, distinct))
    if "" in distinct:
        refused.add("")
    refused.update(compress(distinct, map(MAX_LENGTH.__lt__, map(len, distinct))))
    joined = "".join(distinct)
    if "\x00" in joined or (not joined.isascii() and _SURROGATE.search(joined)):
        refused.update(filter(_NUL_OR_SURROGATE.search, distinct))
    if not refused:
        return []
    positions = compress(range(len(values)), map(refused.__contains__, values))
    return [(position, _reason(values[position])) for position in positions]


def _reason(identity: str) -> str:
    reason = invalid_reason(identity)
    assert reason is not None, identity
    return reason


def _spellings(word: str) -> set[str]:
    """``word`` in every mix of upper and lower case (``nan``, ``NaN``, ``NAN``, …)."""
    return {"".join(letters) for letters in product(*({c.lower(), c.upper()} for c in word))}


#: Every value whose ``lower()`` is a placeholder: each placeholder in every mix of case.  (No character outside
#: ASCII lower-cases to one of their letters, so this is all of them; a test checks it.)
_PLACEHOLDER_SPELLINGS = frozenset().union(*map(_spellings, PLACEHOLDERS))


def storable(value: str) -> str:
    """``value`` as it can be written to the journal and the reports: unchanged, except that a lone surrogate
    (:data:`INVALID_UNICODE`) is spelled as its escape, ``\\ud800``, the way the JSON export spelled it."""
    if value.isascii() or not _SURROGATE.search(value):
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")
