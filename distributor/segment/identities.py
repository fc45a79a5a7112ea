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


def storable(value: str) -> str:
    """``value`` as it can be written to the journal and the reports: unchanged, except that a lone surrogate
    (:data:`INVALID_UNICODE`) is spelled as its escape, ``\\ud800``, the way the JSON export spelled it."""
    if value.isascii() or not _SURROGATE.search(value):
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")
