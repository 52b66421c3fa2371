"""Reading the config file without trusting it.

Whatever ``-c`` points at, reading it ends in a document or in one line
saying what is wrong, quickly:

- anything but a regular file (a FIFO, a device such as ``/dev/zero``, a
  directory) is refused before it is read, and opening it cannot block;
- more than :data:`MAX_BYTES` is refused without reading the rest;
- bytes that are not UTF-8 text (a binary, a UTF-16 file) are refused;
- YAML nested deeper than :data:`MAX_DEPTH` is refused from the event
  stream, before a composer that recurses per level sees it;
- a value YAML cannot construct (a 5,000-digit integer, the date
  ``2001-13-45``, ``!!bool maybe``) is a YAML error at its line, whatever
  exception the constructor raised.
"""

from __future__ import annotations

import os
import stat
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import Node

from sesshu.text import loggable

MAX_BYTES = 1 << 20
MAX_DEPTH = 64  # a real config is five levels deep; plugin options may nest some more

# libyaml when the wheel has it: ten times faster, and its parser keeps no
# Python stack per level.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_KINDS = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]


class UnreadableConfig(Exception):
    """The file cannot be read as a YAML document; the message is one line."""


class _Loader(_BaseLoader):  # type: ignore[misc]
    """The safe loader, with a constructor's ValueError turned into a YAML error at its line."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # noqa: BLE001 - turned into the YAML error it is
            # SafeConstructor raises whatever a value makes it raise: ValueError
            # for 2001-13-45, KeyError for "!!bool maybe", AttributeError for a
            # bad !!timestamp. Python's words are shortened: the int-digit
            # limit's advice to call sys.set_int_max_str_digits() means nothing
            # to an operator.
            kind = str(node.tag).rsplit(":", 1)[-1]
            reason = loggable(str(exc).split(";")[0]) if isinstance(exc, ValueError) else ""
            problem = f"not a valid {kind}" + (f" ({reason})" if reason else "")
            raise ConstructorError(None, None, problem, node.start_mark) from None


def read(path: str) -> Any:
    """The YAML document at ``path``; :class:`UnreadableConfig` for anything else."""
    text = _decode(_read_bytes(path))
    try:
        _check_depth(text)
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise UnreadableConfig(f"not valid YAML{_where(exc)}: {_problem(exc)}") from None
    except RecursionError:
        raise UnreadableConfig(f"not valid YAML: nested deeper than {MAX_DEPTH} levels") from None


def _read_bytes(path: str) -> bytes:
    try:
        _refuse_special(os.stat(path).st_mode)  # before opening: opening a device can have effects
        # O_NONBLOCK: should the path become a FIFO in between, open() must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UnreadableConfig(f"cannot read config file: {exc.strerror or exc}") from None
    except ValueError:  # a NUL in the path
        raise UnreadableConfig("cannot read config file: the path holds a NUL byte") from None
    try:
        info = os.fstat(fd)
        _refuse_special(info.st_mode)
        if info.st_size > MAX_BYTES:
            raise UnreadableConfig(f"the file is {info.st_size} bytes, over the limit of {MAX_BYTES}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_BYTES + 1)  # the file may have grown since fstat
    except OSError as exc:
        raise UnreadableConfig(f"cannot read config file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise UnreadableConfig(f"the file is over the limit of {MAX_BYTES} bytes")
    return data


def _refuse_special(mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    raise UnreadableConfig(f"not a regular file (it is {kind})")


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise UnreadableConfig("not UTF-8 text (it holds NUL bytes: a binary, or UTF-16?); save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableConfig(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8") from None


def _check_depth(text: str) -> None:
    """Refuse a document nested deeper than MAX_DEPTH, reading only as far as that depth."""
    depth = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise UnreadableConfig(f"not valid YAML at line {line}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}" if mark is not None else ""


def _problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    if not problem:  # a ReaderError, or a bare YAMLError: its text is several lines
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
    return loggable(str(problem))
