"""The animate form's fields (AnimateOptions' names): text, or JSON values from the live socket,
to option values, with the errors the client can act on."""

from __future__ import annotations

from typing import Any

from fomm.app.uploads import UploadError
from fomm.config import (
    ANIMATION_REGIONS,
    CROP_DRIVING_CHOICES,
    EXPRESSION_OFFSET_RANGE,
    EXPRESSION_SCALE_RANGE,
    AnimateOptions,
)

# the form's fields and their defaults are AnimateOptions' own
BOOLEAN_OPTIONS = {name: getattr(AnimateOptions(), name) for name in (
    "relative", "adapt_scale", "crop", "multi_person", "find_best_frame", "audio", "detail",
    "expression")}
INDEX_OPTIONS = ("face_index", "best_frame")
CHOICE_OPTIONS = {"crop_driving": CROP_DRIVING_CHOICES, "animation_region": ANIMATION_REGIONS}
# the expression layer's numbers: field → (lowest, highest); defaults are AnimateOptions'
NUMBER_OPTIONS = {"expression_scale": EXPRESSION_SCALE_RANGE, "eye_offset": EXPRESSION_OFFSET_RANGE,
                  "mouth_offset": EXPRESSION_OFFSET_RANGE, "smile_offset": EXPRESSION_OFFSET_RANGE}
EXPRESSION_FIELDS = ("expression", "animation_region", *NUMBER_OPTIONS)


def parse_field(key: str, value: str | float | bool) -> Any:
    """One form field's value (text, or a JSON value from the live socket) → the
    :class:`AnimateOptions` value; an :class:`UploadError` for an unknown field (400), a
    malformed value (400) or a number out of range or an unknown choice (422)."""
    text = str(value).strip().lower()
    if key in BOOLEAN_OPTIONS:
        if text not in ("true", "false", "1", "0", "on", "off", "yes", "no"):
            raise UploadError(400, "invalid_option", f"{key} must be true or false")
        return text in ("true", "1", "on", "yes")
    if key in INDEX_OPTIONS:
        if text and not (text.isascii() and text.isdigit()):  # not "²" or "٣"
            raise UploadError(400, "invalid_option", f"{key} must be a whole number >= 0")
        return int(text) if text else None
    if key in CHOICE_OPTIONS:
        choices = CHOICE_OPTIONS[key]
        if text not in choices:
            status = 400 if key == "crop_driving" else 422
            raise UploadError(status, "invalid_option",
                              f"{key} must be one of {', '.join(choices)}, got {text!r}")
        return text
    if key in NUMBER_OPTIONS:
        low, high = NUMBER_OPTIONS[key]
        try:
            number = float(text) if text.isascii() and not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None:
            raise UploadError(400, "invalid_option", f"{key} must be a number")
        if not low <= number <= high:  # NaN fails too
            raise UploadError(422, "invalid_option",
                              f"{key} must be between {low:g} and {high:g}, got {text}")
        return number
    raise UploadError(400, "unknown_field", f"unknown form field '{key}'")
