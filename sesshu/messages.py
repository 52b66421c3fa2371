"""Turning an SQS message body into a job request, or a reason to reject it.

A body is either an SNS notification envelope whose ``Message`` holds the
request JSON, or (under raw message delivery) the request JSON itself. The
plugin name must be one of the enabled plugins, so a request can never make
a child import an arbitrary module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cerberus import Validator

MAX_BODY_BYTES = 256 * 1024
MAX_TARGET_CHARS = 2048

_ENVELOPE = {
    "Type": {"type": "string", "allowed": ["Notification"], "required": True},
    "Message": {"type": "string", "required": True},
}


class Rejected(Exception):
    """The message can never be processed as it is; it belongs in the DLQ."""


@dataclass(frozen=True)
class Request:
    plugin: str
    target: str


class RequestParser:
    """Validates request bodies against the set of enabled plugins."""

    def __init__(self, enabled: tuple[str, ...] | list[str]) -> None:
        self._schema = {
            # Only an enabled name passes: a request can never name a module to import.
            "plugin": {"type": "string", "required": True, "allowed": list(enabled)},
            "target": {"type": "string", "required": True, "empty": False, "maxlength": MAX_TARGET_CHARS},
        }
        # Extra keys are allowed (and ignored) so that Panorama can add fields
        # without every worker rejecting its requests.
        self._validator = Validator(self._schema, allow_unknown=True)
        self._envelope = Validator(_ENVELOPE, allow_unknown=True)

    def parse(self, body: str) -> Request:
        if len(body) > MAX_BODY_BYTES:
            raise Rejected(f"body is {len(body)} characters, over {MAX_BODY_BYTES}")
        doc = _json_object(body, "body")
        # normalize=False: these schemas set no defaults or coercions, and
        # cerberus' normalisation pass costs nine tenths of its time.
        if "Type" in doc and "Message" in doc:
            if not self._envelope.validate(doc, normalize=False):
                raise Rejected(f"bad SNS envelope: {_errors(self._envelope.errors)}")
            doc = _json_object(doc["Message"], "SNS Message")
        if not self._validator.validate(doc, normalize=False):
            raise Rejected(_errors(self._validator.errors))
        return Request(doc["plugin"], doc["target"])


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise Rejected(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise Rejected(f"{what} is not a JSON object")
    return doc


def _errors(errors: dict[str, Any]) -> str:
    parts = []
    for key in sorted(errors):
        messages = [m for m in errors[key] if isinstance(m, str)]
        # cerberus echoes the offending value; it came from the sender, so never repeat it.
        if any(m.startswith("unallowed value") for m in messages):
            messages = ["is not an enabled plugin" if key == "plugin" else "has a value that is not allowed"]
        parts.append(f"{key} {'; '.join(messages) or 'is invalid'}")
    return ", ".join(parts)
