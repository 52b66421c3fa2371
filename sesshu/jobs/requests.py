"""Turning an SQS message body into a job request, or a reason to reject it.

A body is either an SNS notification envelope whose ``Message`` holds the
request JSON, or (under raw message delivery) the request JSON itself. The
plugin name must be one of the enabled plugins, so a request can never make
a child import an arbitrary module.

The body comes from anyone who can publish to the topic, so it is bounded
before anything parses it: its size in UTF-8 bytes, then its nesting depth
(a scan of the brackets outside strings), and only then ``json.loads``.
cerberus sees only the scalar values of the keys it checks, never a nested
structure, so nothing a sender writes can make it recurse. ``parse`` either
returns a :class:`Request` or raises :class:`Rejected`, for any ``str``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cerberus import Validator

from sesshu import nesting
from sesshu.config.schema import valid_plugin_name
from sesshu.text import loggable

MAX_BODY_BYTES = 256 * 1024  # what SQS itself accepts
MAX_DEPTH = 32  # a request is two levels deep; extra keys may nest a little
MAX_TARGET_CHARS = 2048
MAX_PLUGIN_CHARS = 128  # as long as config.PLUGIN_NAME allows

_ENVELOPE = {
    "Type": {"type": "string", "allowed": ["Notification"], "required": True},
    "Message": {"type": "string", "required": True},
}
# What cerberus is shown in place of a list or an object: still "not a string".
_CONTAINER = 0


class Rejected(Exception):
    """The message can never be processed as it is; it belongs in the DLQ.

    ``plugin`` and ``target`` are what the request named, when it named them
    as strings, so that the log line can say which job was refused.
    """

    def __init__(self, reason: str, plugin: str | None = None, target: str | None = None) -> None:
        super().__init__(reason)
        self.plugin, self.target = plugin, target


@dataclass(frozen=True)
class Request:
    plugin: str
    target: str
    traceparent: str | None = None  # the SNS envelope's traceparent attribute, unchecked (sesshu.jobs.trace)


class RequestParser:
    """Validates request bodies against the set of enabled plugins."""

    def __init__(self, enabled: tuple[str, ...] | list[str]) -> None:
        self._schema = {
            # Only an enabled name passes: a request can never name a module to import.
            "plugin": {"type": "string", "required": True, "maxlength": MAX_PLUGIN_CHARS,
                       "allowed": list(enabled)},
            "target": {"type": "string", "required": True, "empty": False, "maxlength": MAX_TARGET_CHARS},
        }
        # Extra keys are allowed (and ignored) so that Panorama can add fields
        # without every worker rejecting its requests.
        self._validator = Validator(self._schema, allow_unknown=True)
        self._enabled = tuple(enabled)
        self._enabled_set = frozenset(enabled)
        self._envelope = Validator(_ENVELOPE, allow_unknown=True)

    def parse(self, body: str) -> Request:
        doc = _json_object(body, "body")
        # normalize=False: these schemas set no defaults or coercions, and
        # cerberus' normalisation pass costs nine tenths of its time.
        traceparent = None
        if "Type" in doc and "Message" in doc:
            if not _plain_envelope(doc) and not self._envelope.validate(_scalars(doc, _ENVELOPE), normalize=False):
                raise Rejected(f"bad SNS envelope: {_errors(self._envelope.errors)}")
            traceparent = _envelope_attribute(doc, "traceparent")
            doc = _json_object(doc["Message"], "SNS Message")
        named = {k: v for k in ("plugin", "target") if isinstance(v := doc.get(k), str)}
        try:
            if not self._plain(doc) and not self._validator.validate(_scalars(doc, self._schema), normalize=False):
                raise Rejected(_errors(self._validator.errors, self._enabled, named.get("plugin")))
            plugin, target = doc["plugin"], doc["target"]
            _check_text(plugin, "plugin")
            _check_text(target, "target")
        except Rejected as exc:
            raise Rejected(str(exc), named.get("plugin"), named.get("target")) from None
        return Request(plugin, target, traceparent)


    def _plain(self, doc: dict[str, Any]) -> bool:
        """Whether the schema plainly takes this request: its common case, checked without cerberus.

        It only ever says yes where cerberus would (a test holds the two
        together); for anything else cerberus decides, and says why not.
        cerberus is most of what a parse costs, and most requests are plain.
        """
        plugin, target = doc.get("plugin"), doc.get("target")
        return (type(plugin) is str and plugin in self._enabled_set and len(plugin) <= MAX_PLUGIN_CHARS
                and type(target) is str and 0 < len(target) <= MAX_TARGET_CHARS)


def _plain_envelope(doc: dict[str, Any]) -> bool:
    """Whether ``_ENVELOPE`` plainly takes this envelope, as :meth:`RequestParser._plain` for a request."""
    return doc.get("Type") == "Notification" and type(doc.get("Message")) is str


def _envelope_attribute(envelope: dict[str, Any], name: str) -> str | None:
    """A String attribute from an SNS envelope's ``MessageAttributes``, if it has one."""
    attributes = envelope.get("MessageAttributes")
    attribute = attributes.get(name) if isinstance(attributes, dict) else None
    value = attribute.get("Value") if isinstance(attribute, dict) else None
    return value if isinstance(value, str) else None


def _json_object(text: str, what: str) -> dict[str, Any]:
    _check_size(text, what)
    _check_depth(text, what)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # ValueError covers integers beyond Python's digit limit
        raise Rejected(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise Rejected(f"{what} is not a JSON object")
    return doc


def _check_size(text: str, what: str) -> None:
    # Every character is at least one byte: a long text is refused before it is encoded.
    if len(text) > MAX_BODY_BYTES:
        raise Rejected(f"{what} is over {MAX_BODY_BYTES} bytes ({len(text)} characters)")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise Rejected(f"{what} is not valid UTF-8 (it holds a lone surrogate)") from None
    if size > MAX_BODY_BYTES:
        raise Rejected(f"{what} is {size} bytes, over {MAX_BODY_BYTES}")


def _check_depth(text: str, what: str) -> None:
    if nesting.deeper_than(text, MAX_DEPTH):
        raise Rejected(f"{what} is nested deeper than {MAX_DEPTH} levels")


def _scalars(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The keys ``schema`` checks, with any list or object replaced by a stand-in scalar."""
    return {key: doc[key] if not isinstance(doc[key], (list, dict)) else _CONTAINER
            for key in schema if key in doc}


def _check_text(value: str, key: str) -> None:
    """Targets and plugin names are one line of printable text (a plain space is fine).

    Anything else (a control, bidi or separator character, a lone surrogate
    from a ``\\ud800`` escape) could forge a log line or break a process title.
    """
    if value.isprintable():
        return
    at = next(i for i, ch in enumerate(value) if not ch.isprintable())
    raise Rejected(f"{key} holds the non-printable character U+{ord(value[at]):04X} at position {at}")


def _errors(errors: dict[str, Any], enabled: tuple[str, ...] = (), plugin: str | None = None) -> str:
    parts = []
    for key in sorted(errors):
        messages = [m for m in errors[key] if isinstance(m, str)]
        # cerberus echoes the offending value raw; it came from the sender, so
        # it is named here only masked, escaped and clipped.
        if any(m.startswith("unallowed value") for m in messages):
            if key == "plugin" and plugin is not None and valid_plugin_name(plugin):
                messages = [f"{loggable(plugin, 60)!r} is not an enabled plugin (enabled: {', '.join(enabled)})"]
            else:
                messages = ["is not an enabled plugin" if key == "plugin" else "has a value that is not allowed"]
        parts.append(f"{key} {'; '.join(messages) or 'is invalid'}")
    return ", ".join(parts)
