"""Write the man pages and bash completions from the argument parsers and the config schema.

    python packaging/docgen.py            # rewrite packaging/man/ and packaging/completion/
    python packaging/docgen.py --check    # exit 1 if a committed file differs from what the code says

The pages are generated so that they cannot drift from the code: tests run
``--check``, and packaging/build-deb installs the files.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ["COLUMNS"] = "100"  # argparse wraps usage lines to the terminal: the same everywhere

from sesshu import __version__  # noqa: E402
from sesshu.config.schema import SCHEMA  # noqa: E402
from sesshu.daemon.cli import _parser as daemon_parser  # noqa: E402
from sesshu.ops.cli import _parser as operator_parser  # noqa: E402

DATE = "2026-12"  # fixed, so that a page changes only when what it says changes


def roff(text: str) -> str:
    """Text made safe for a roff line."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def header(name: str, section: int, what: str) -> list[str]:
    return [f'.TH {name.upper()} {section} "{DATE}" "sesshu {__version__}" "Sesshu"', ".SH NAME",
            f"{roff(name)} \\- {roff(what)}"]


def options(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            names = ", ".join(f"\\fB{roff(o)}\\fR" for o in action.option_strings)
            if action.nargs != 0:
                names += f" \\fI{roff(action.metavar or action.dest.upper())}\\fR"
        else:
            names = f"\\fI{roff(action.metavar or action.dest.upper())}\\fR"
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog}
        yield from (".TP", names, roff(help_text))


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((name, sub, helps.get(name, "")))
    return found


def command_page(parser: argparse.ArgumentParser, section: int, what: str, extra: list[str]) -> str:
    lines = header(parser.prog, section, what)
    lines += [".SH SYNOPSIS", roff(parser.format_usage().removeprefix("usage: ").strip())]
    lines += [".SH DESCRIPTION", roff(parser.description or what)]
    lines += [".SH OPTIONS", *options(parser)]
    subs = subcommands(parser)
    if subs:
        lines.append(".SH COMMANDS")
        for name, sub, help_text in subs:
            lines += [".SS " + roff(f"{parser.prog} {name}"), roff(help_text),
                      ".PP", roff(sub.format_usage().removeprefix("usage: ").strip()), *options(sub)]
            for name2, sub2, help2 in subcommands(sub):
                lines += [".SS " + roff(f"{parser.prog} {name} {name2}"), roff(help2), ".PP",
                          roff(sub2.format_usage().removeprefix("usage: ").strip()), *options(sub2)]
    if parser.epilog:
        lines += [".SH EXIT STATUS", roff(parser.epilog)]
    lines += extra
    lines += [".SH SEE ALSO", "\\fBsesshud\\fR(8), \\fBsesshu\\fR(1), \\fBsesshu.yaml\\fR(5),",
              "/usr/share/doc/sesshu/README.md.gz"]
    return "\n".join(lines) + "\n"


def schema_rows(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, rules in schema.items():
        path = f"{prefix}{key}"
        kind = rules.get("type", "")
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        facts = [kind] if kind else []
        if "allowed" in rules:
            facts.append("one of " + ", ".join(map(str, rules["allowed"])))
        if "min" in rules or "max" in rules:
            facts.append(f"from {rules.get('min', '')} to {rules.get('max', '')}".replace("from  to", "up to"))
        if rules.get("required"):
            facts.append("required")
        elif "default" in rules and rules["default"] not in ({}, None):
            facts.append(f"default {rules['default']!r}")
        if rules.get("nullable"):
            facts.append("may be null")
        if "restart" in rules.get("meta", {}):
            facts.append("a reload keeps the running value: restart to change it")
        if kind == "dict" and "schema" in rules:
            yield path, "; ".join(facts)
            yield from schema_rows(rules["schema"], path + ".")
        else:
            yield path, "; ".join(facts)


def config_page() -> str:
    lines = header("sesshu.yaml", 5, "configuration file of the Sesshu daemon")
    lines += [".SH DESCRIPTION",
              roff("sesshud(8) reads its configuration from a YAML file, /etc/sesshu.yaml by default. Every key "
                   "below is checked at start-up and on SIGHUP; a bad value stops the start with one line naming "
                   "the key. Credentials are never read from this file: they come from boto3's default chain."),
              ".SH KEYS"]
    for path, facts in schema_rows(SCHEMA):
        lines += [".TP", f"\\fB{roff(path)}\\fR", roff(facts)]
    lines += [".SH FILES", "/etc/sesshu.yaml", ".SH SEE ALSO", "\\fBsesshud\\fR(8), \\fBsesshu\\fR(1),",
              "/usr/share/doc/sesshu/README.md.gz (its Configuration section explains each key)"]
    return "\n".join(lines) + "\n"


def words(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for a in parser._actions for o in a.option_strings)


def completion(parser: argparse.ArgumentParser) -> str:
    """A bash completion, needing nothing of the bash-completion package: subcommands, then options; files."""
    prog = parser.prog
    func = f"_{prog}"
    cases = []
    for name, sub, _ in subcommands(parser):
        nested = subcommands(sub)
        if nested:
            inner = " ".join(n for n, _, _ in nested)
            cases.append(f"        {name}) [[ $COMP_CWORD -eq 2 ]] && words_here=\"{inner}\" || "
                         f"words_here=\"{' '.join(sorted({w for _, s, _ in nested for w in words(s)}))}\" ;;")
        else:
            cases.append(f"        {name}) words_here=\"{' '.join(words(sub))}\" ;;")
    top = " ".join([n for n, _, _ in subcommands(parser)] + words(parser))
    body = [f"# bash completion for {prog}; generated by packaging/docgen.py from its argument parser",
            f"{func}() {{",
            "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} words_here",
            "    case $prev in",
            "        -c|--config|--pidfile|--plugin-path) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;",
            "    esac"]
    if cases:
        body += ["    if [[ $COMP_CWORD -eq 1 ]]; then",
                 f"        COMPREPLY=($(compgen -W \"{top}\" -- \"$cur\"))",
                 "        return",
                 "    fi",
                 "    case ${COMP_WORDS[1]} in",
                 *cases,
                 "        *) words_here=\"\" ;;",
                 "    esac",
                 "    COMPREPLY=($(compgen -W \"$words_here\" -- \"$cur\"))"]
    else:
        body += [f"    COMPREPLY=($(compgen -W \"{top}\" -- \"$cur\"))"]
    body += ["}", f"complete -F {func} {prog}"]
    return "\n".join(body) + "\n"


def files() -> dict[Path, str]:
    daemon, operator = daemon_parser(), operator_parser()
    signals = [".SH SIGNALS", ".TP", "TERM, INT", roff("graceful stop: no more receiving, running jobs finish"),
               ".TP", "QUIT", roff("fast stop: running jobs are killed and their messages released"),
               ".TP", "HUP", roff("re-read the config; apply it once its plugins load in a probe worker"),
               ".TP", "USR1", roff("reopen the log file"), ".TP", "TTIN, TTOU", roff("one worker more, one fewer")]
    return {
        HERE / "man" / "sesshud.8": command_page(daemon, 8, "Sesshu SQS job-worker daemon", signals),
        HERE / "man" / "sesshu.1": command_page(operator, 1, "operate a Sesshu deployment", []),
        HERE / "man" / "sesshu.yaml.5": config_page(),
        HERE / "completion" / "sesshud": completion(daemon),
        HERE / "completion" / "sesshu": completion(operator),
    }


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for path, text in files().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.write_text(text)
    for path in stale:
        print(f"docgen: {path.relative_to(HERE.parent)} is stale: run python packaging/docgen.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
