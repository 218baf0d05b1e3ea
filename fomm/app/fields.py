"""The animate form's fields: :class:`~fomm.config.AnimateOptions`' own fields, kinds and defaults,
with the ranges of :mod:`fomm.config`; text (or JSON values from the live socket) to option values,
with the errors the client can act on, and the form's OpenAPI schema.

Every field of AnimateOptions is a form field unless the server decides it
(:data:`SERVER_OPTIONS`) or only ``fomm animate`` offers it (:data:`COMMAND_LINE_OPTIONS`): a new
option appears in the API, the page's schema and the live socket without being named here.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from fomm.app.uploads import UploadError
from fomm.config import EXPRESSION_RANGES, AnimateOptions

# what the server's settings decide (fomm.app.settings.Settings), not the client
SERVER_OPTIONS = ("batch_size", "device", "precision", "backend", "progress", "flavour")
# what fomm animate offers and the form does not
COMMAND_LINE_OPTIONS = ("crop_margin", "result_size", "max_frames", "fps")
# the form's words for what the fields do (the OpenAPI schema's descriptions)
DESCRIPTIONS = {
    "relative": "relative motion (false: absolute keypoint positions)",
    "crop": "crop the source's face and paste it back (false: whole image)",
    "crop_driving": "frame the driving video's face: auto (when the source face is cropped), on, "
                    "off (whole frame)",
    "detail": "render the face at the photo's resolution (false: the model-size result scaled up)",
    "expression": "render the driver's eye, brow and mouth shapes on the face (needs crop)",
    "animation_region": "what moves: all (head and expression), pose (the head only), expression, "
                        "eyes or lips (that part of the face on the still photo)",
    "expression_scale": "strength of the driver's expression",
    "eye_offset": "eyes more open (+) or closed (-)",
    "mouth_offset": "mouth more open (+) or closed (-)",
    "smile_offset": "mouth corners up (+) or down (-)",
}
Kind = Literal["boolean", "index", "choice", "number"]
_TRUE, _FALSE = ("true", "1", "on", "yes"), ("false", "0", "off", "no")


@dataclass(frozen=True)
class Field:
    """One form field: an AnimateOptions field, what its values may be, and its default."""

    name: str
    kind: Kind  # boolean; index: a whole number >= 0 or empty; choice; number within ``bounds``
    default: Any
    choices: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None

    def schema(self) -> dict[str, Any]:
        """The field's JSON schema (OpenAPI)."""
        schema: dict[str, Any] = {"type": {"index": "integer", "choice": "string"}.get(
            self.kind, self.kind)}
        if self.kind == "index":
            schema["minimum"] = 0
        elif self.kind == "choice":
            schema["enum"] = list(self.choices)
        elif self.bounds is not None:
            schema["minimum"], schema["maximum"] = self.bounds
        if self.default is not None:
            schema["default"] = self.default
        if self.name in DESCRIPTIONS:
            schema["description"] = DESCRIPTIONS[self.name]
        return schema


def _field(option: dataclasses.Field, hint: Any) -> Field:
    """An AnimateOptions field as a form field, its kind read from its type."""
    name, default = option.name, option.default
    args = typing.get_args(hint)
    if hint is bool:
        return Field(name, "boolean", default)
    if typing.get_origin(hint) is Literal:
        return Field(name, "choice", default, choices=args)
    if hint is float and name in EXPRESSION_RANGES:
        return Field(name, "number", default, bounds=EXPRESSION_RANGES[name])
    if int in args and type(None) in args and len(args) == 2:
        return Field(name, "index", default)
    raise TypeError(f"AnimateOptions.{name}: no form field for {hint}; give it a kind in "
                    "fomm.app.fields, or list it in SERVER_OPTIONS or COMMAND_LINE_OPTIONS")


def form_fields(options: type = AnimateOptions) -> dict[str, Field]:
    """The form fields of an options dataclass (AnimateOptions), by name, in its order."""
    hints = typing.get_type_hints(options)
    return {option.name: _field(option, hints[option.name])
            for option in dataclasses.fields(options)
            if option.name not in SERVER_OPTIONS + COMMAND_LINE_OPTIONS}


FIELDS = form_fields()
BOOLEAN_OPTIONS = {name: f.default for name, f in FIELDS.items() if f.kind == "boolean"}
# the expression layer's settings (checked by fomm.config.check_expression): a value it refuses
# is a 422, as is a number out of range
EXPRESSION_FIELDS = ("expression", "animation_region", *EXPRESSION_RANGES)


def parse_field(key: str, value: str | float | bool) -> Any:
    """One form field's value (text, or a JSON value from the live socket) → the
    :class:`AnimateOptions` value; an :class:`UploadError` for an unknown field (400), a
    malformed value (400) or a number out of range or an unknown choice (422; 400 outside the
    expression settings)."""
    field = FIELDS.get(key)
    if field is None:
        raise UploadError(400, "unknown_field", f"unknown form field '{key}'")
    text = str(value).strip().lower()
    if field.kind == "boolean":
        if text not in _TRUE + _FALSE:
            raise UploadError(400, "invalid_option", f"{key} must be true or false")
        return text in _TRUE
    if field.kind == "index":
        if text and not (text.isascii() and text.isdigit()):  # not "²" or "٣"
            raise UploadError(400, "invalid_option", f"{key} must be a whole number >= 0")
        return int(text) if text else None
    if field.kind == "choice":
        if text not in field.choices:
            status = 422 if key in EXPRESSION_FIELDS else 400
            raise UploadError(status, "invalid_option",
                              f"{key} must be one of {', '.join(field.choices)}, got {text!r}")
        return text
    low, high = field.bounds
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


def parse_fields(fields: dict[str, str]) -> dict[str, Any]:
    """The form's fields → AnimateOptions keyword arguments (the booleans' defaults first); a
    400 for a field given with the one it excludes (``best_frame`` and ``find_best_frame``,
    ``face_index`` and ``multi_person``)."""
    values: dict[str, Any] = dict(BOOLEAN_OPTIONS)
    for key, text in fields.items():
        values[key] = parse_field(key, text)
    if values.get("best_frame") is not None and values["find_best_frame"]:
        raise UploadError(400, "invalid_option", "give best_frame or find_best_frame, not both")
    if values.get("face_index") is not None and values["multi_person"]:
        raise UploadError(400, "invalid_option", "give face_index or multi_person, not both")
    return values


def _binary(description: str) -> dict[str, str]:
    return {"type": "string", "format": "binary", "description": description}


def form_schema(files: dict[str, str], required: tuple[str, ...]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads the form itself: ``files`` (name →
    description) and every option field, as multipart/form-data."""
    properties = {name: _binary(text) for name, text in files.items()}
    properties.update({name: field.schema() for name, field in FIELDS.items()})
    schema = {"type": "object", "required": list(required), "properties": properties}
    return {"requestBody": {"required": True,
                            "content": {"multipart/form-data": {"schema": schema}}}}
