"""CleverTap's rules for what an identity may be.

CleverTap refuses an empty identity, one of 1024 characters or more, and a list of placeholder values (compared
without regard to case).  A member whose identity breaks these rules cannot receive the code as a profile property,
so publishing a code to it would waste a code and a call: such rows are skipped and reported instead.

Identities are otherwise exact strings: nothing here trims, re-cases or re-types them.
"""

from __future__ import annotations

#: Values CleverTap refuses as an identity (``../shared/reference/clevertap.md``), lower-cased.
PLACEHOLDERS = frozenset(
    {
        "undefined", "null", "na", "n/a", "0", "nil", "-1", "infinity", "-infinity", "inf", "-inf",
        "nan", "-nan", "empty", "xxxxxx", "none",
    }
)
MAX_LENGTH = 1023

# Reasons, as written in the skipped-rows report and counted in the summary.
EMPTY = "empty"
TOO_LONG = "too_long"
PLACEHOLDER = "placeholder"
CONTROL_CHARACTER = "control_character"
DUPLICATE = "duplicate"

REASON_TEXT = {
    EMPTY: "empty identity",
    TOO_LONG: f"identity of more than {MAX_LENGTH} characters",
    PLACEHOLDER: "a placeholder CleverTap refuses as identity",
    CONTROL_CHARACTER: "contains a NUL character",
    DUPLICATE: "appears earlier in the segment; published once",
}


def invalid_reason(identity: str) -> str | None:
    """Why CleverTap would refuse ``identity``, or ``None`` when it is usable.

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
    return None
