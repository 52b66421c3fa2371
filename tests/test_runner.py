"""The child's job runner and plugin loader, in-process with tiny plugin objects."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sesshu.pool.protocol import Job, Result
from sesshu.worker.runner import load_plugin, run_job

ROOT = Path(__file__).resolve().parents[1]
CHAOS = ROOT / "tests" / "plugins" / "chaos.py"
BROKEN = ROOT / "tests" / "broken_plugins"
LIMIT = 1000


def plugin(fetch: Callable[[str], Any], validate: Callable[[str], None] | None = None,
           name: str = "tiny") -> types.ModuleType:
    module = types.ModuleType(name)
    module.fetch = fetch  # type: ignore[attr-defined]
    module.validate = validate or (lambda target: None)  # type: ignore[attr-defined]
    return module


def run(module: types.ModuleType, target: str = "t", limit: int = LIMIT) -> Result:
    return run_job({"tiny": module}, Job(11, "tiny", target), limit)


def fail(exc: BaseException) -> Callable[..., Any]:
    def raiser(*_: Any) -> Any:
        raise exc
    return raiser


@pytest.fixture
def clean_modules() -> Iterator[None]:
    """Forget every module a test imported, so tests stay independent."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


# -- run_job ---------------------------------------------------------------


def test_done_payload_is_compact_json() -> None:
    result = run(plugin(lambda t: {"target": t, "list": [1, 2.5, None, True], "nested": {"a": "b"}}), "x")
    assert result == Result(11, "done", "", b'{"target":"x","list":[1,2.5,null,true],"nested":{"a":"b"}}')


def test_done_payload_is_ascii_even_for_unicode_results() -> None:
    result = run(plugin(lambda t: {"t": "\u00e9\u4e2d\U0001f600"}))
    assert result.status == "done"
    assert result.payload.isascii()
    assert json.loads(result.payload) == {"t": "\u00e9\u4e2d\U0001f600"}


@pytest.mark.parametrize("value", ["text", 0, False, [], {}])
def test_falsy_but_not_none_results_are_done(value: Any) -> None:
    result = run(plugin(lambda t: value))
    assert result.status == "done" and json.loads(result.payload) == value


def test_none_is_empty() -> None:
    assert run(plugin(lambda t: None)) == Result(11, "empty")


@pytest.mark.parametrize("exc", [ValueError("bad target"), SystemExit(2), KeyboardInterrupt()])
def test_validate_raising_is_rejected_and_fetch_is_not_called(exc: BaseException) -> None:
    calls: list[str] = []
    result = run(plugin(lambda t: calls.append(t), fail(exc)))
    assert result.status == "rejected"
    assert result.error.startswith(f"invalid target: {type(exc).__name__}")
    assert calls == []


def test_fetch_raising_is_failed() -> None:
    result = run(plugin(fail(RuntimeError("upstream said 503"))))
    assert result == Result(11, "failed", "fetch raised RuntimeError: upstream said 503", reason="fetch_error")


@pytest.mark.parametrize("exc", [SystemExit(1), KeyboardInterrupt(), GeneratorExit()])
def test_fetch_raising_a_base_exception_is_failed(exc: BaseException) -> None:
    result = run(plugin(fail(exc)))
    assert (result.status, result.reason) == ("failed", "fetch_error")


def test_fetch_running_out_of_memory_is_failed_with_reason_memory() -> None:
    result = run(plugin(fail(MemoryError())))
    assert (result.status, result.reason) == ("failed", "memory")


def test_error_texts_are_bounded() -> None:
    result = run(plugin(fail(RuntimeError("x" * 100_000))))
    assert result.status == "failed" and len(result.error) < 600


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"v": [float("-inf")]}])
def test_nan_and_infinity_are_failed(value: Any) -> None:
    result = run(plugin(lambda t: value))
    assert (result.status, result.reason) == ("failed", "unserialisable")
    assert "not JSON-serialisable" in result.error
    assert result.payload == b""


@pytest.mark.parametrize("value", [object(), {"when": object()}, {(1, 2): "tuple key"}, {1, 2}, b"bytes"])
def test_unserialisable_results_are_failed(value: Any) -> None:
    result = run(plugin(lambda t: value))
    assert (result.status, result.reason) == ("failed", "unserialisable")
    assert "not JSON-serialisable" in result.error


def test_self_referencing_result_is_failed() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert run(plugin(lambda t: loop)).status == "failed"


def test_result_size_limit() -> None:
    at_limit = "x" * (LIMIT - 2)  # plus two quotes: exactly LIMIT bytes
    assert run(plugin(lambda t: at_limit)).status == "done"
    over = run(plugin(lambda t: at_limit + "x"))
    assert over == Result(11, "failed", f"result is {LIMIT + 1} bytes, over the {LIMIT}-byte limit",
                          reason="too_large")


def test_unknown_plugin_is_rejected() -> None:
    result = run_job({"tiny": plugin(lambda t: 1)}, Job(3, "other", "t"), LIMIT)
    assert result == Result(3, "rejected", "plugin 'other' is not loaded")


# -- load_plugin -----------------------------------------------------------


def test_load_file_plugin(clean_modules: None) -> None:
    module = load_plugin("chaos", "file", str(CHAOS))
    assert module.fetch("chaos:echo:hi")["echo"] == "hi"
    assert run_job({"chaos": module}, Job(1, "chaos", "chaos:none"), LIMIT).status == "empty"
    assert run_job({"chaos": module}, Job(2, "chaos", "chaos:invalid"), LIMIT).status == "rejected"


def test_load_module_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_modules: None) -> None:
    (tmp_path / "sesshu_test_modplugin.py").write_text(
        "def validate(t):\n    pass\n\ndef fetch(t):\n    return {'module': t}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = load_plugin("modplugin", "module", "sesshu_test_modplugin")
    assert module.fetch("x") == {"module": "x"}


def test_load_shipped_plugin(clean_modules: None) -> None:
    module = load_plugin("http_robots", "module", "sesshu_plugins.http_robots")
    assert callable(module.fetch) and callable(module.validate)


@pytest.mark.parametrize("ref", ["sesshu_test_epplugin", " sesshu_test_epplugin : impl ",
                                 "sesshu_test_epplugin:holder.inner"])
def test_load_entry_point_plugin(ref: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 clean_modules: None) -> None:
    (tmp_path / "sesshu_test_epplugin.py").write_text(
        "def validate(t):\n    pass\n\n"
        "def fetch(t):\n    return 'top'\n\n"
        "class impl:\n    validate = staticmethod(validate)\n    fetch = staticmethod(lambda t: 'impl')\n\n"
        "class holder:\n    inner = impl\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = load_plugin("ep", "entry_point", ref)
    assert module.fetch("x") == ("top" if ":" not in ref else "impl")


def test_a_module_lacking_fetch_is_a_type_error(clean_modules: None) -> None:
    with pytest.raises(TypeError, match=r"no callable fetch\(target\)"):
        load_plugin("incomplete", "file", str(BROKEN / "incomplete.py"))


def test_a_module_whose_fetch_is_not_callable_is_a_type_error(tmp_path: Path, clean_modules: None) -> None:
    path = tmp_path / "notcallable.py"
    path.write_text("validate = print\nfetch = 'nope'\n")
    with pytest.raises(TypeError, match="fetch"):
        load_plugin("notcallable", "file", str(path))


def test_a_module_lacking_validate_is_a_type_error(tmp_path: Path, clean_modules: None) -> None:
    path = tmp_path / "novalidate.py"
    path.write_text("def fetch(t):\n    return 1\n")
    with pytest.raises(TypeError, match="validate"):
        load_plugin("novalidate", "file", str(path))


def test_a_plugin_that_fails_to_import(clean_modules: None) -> None:
    with pytest.raises(ImportError, match="broken on purpose"):
        load_plugin("broken", "file", str(BROKEN / "broken.py"))


def test_a_missing_module(clean_modules: None) -> None:
    with pytest.raises(ModuleNotFoundError):
        load_plugin("ghost", "module", "sesshu_test_no_such_module")


# -- the plugin API: RetryLater and Reject ------------------------------------------------


def test_retry_later_from_fetch_or_validate_is_retried_with_its_delay() -> None:
    from sesshu.plugin import RetryLater

    later = run(plugin(fail(RetryLater(119.2, "busy"))))
    assert later == Result(11, "failed", "plugin asked to retry in 120 s: busy", reason="retry_later", delay=120)
    early = run(plugin(lambda t: 1, validate=fail(RetryLater(5))))
    assert (early.status, early.reason, early.delay) == ("failed", "retry_later", 5)


@pytest.mark.parametrize(("asked", "delay"), [(-5, 0), (10**9, 43200), (float("nan"), 0), (float("inf"), 43200),
                                               ("soon", 0), (0.001, 1)])
def test_a_retry_later_delay_is_bounded_in_the_worker(asked: Any, delay: int) -> None:
    from sesshu.plugin import RetryLater

    result = run(plugin(fail(RetryLater(asked))))
    assert (result.reason, result.delay) == ("retry_later", delay)


def test_reject_from_fetch_or_validate_rejects_with_its_reason() -> None:
    from sesshu.plugin import Reject

    assert run(plugin(fail(Reject("robots.txt is gone")))) == Result(
        11, "rejected", "rejected by the plugin: robots.txt is gone")
    assert run(plugin(lambda t: 1, validate=fail(Reject("")))).error == "rejected by the plugin: no reason given"


def test_a_subclass_whose_reason_cannot_print_still_rejects() -> None:
    from sesshu.plugin import Reject

    class Odd(Reject):
        @property  # type: ignore[override]
        def reason(self) -> str:
            raise RuntimeError("no")

        @reason.setter
        def reason(self, _: str) -> None:
            pass

    assert run(plugin(fail(Odd("x")))).status == "rejected"
