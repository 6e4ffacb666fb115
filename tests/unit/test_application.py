"""The user-facing App API: Gradio's names, defaults and limit resolution."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

import surge


def test_default_concurrency_limit_is_one_and_a_function_limit_takes_priority() -> None:
    app = surge.App()

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def a(x: str) -> str:
        return x

    @app.function(inputs=["textbox"], outputs=["textbox"], concurrency_limit=3)
    def b(x: str) -> str:
        return x

    assert app.concurrency_limit("a") == 1
    assert app.concurrency_limit("b") == 3


def test_functions_sharing_a_concurrency_id_share_the_lowest_limit() -> None:
    app = surge.App(default_concurrency_limit=None)

    @app.function(inputs=["textbox"], outputs=["textbox"], concurrency_id="gpu", concurrency_limit=4)
    def a(x: str) -> str:
        return x

    @app.function(inputs=["textbox"], outputs=["textbox"], concurrency_id="gpu", concurrency_limit=2)
    def b(x: str) -> str:
        return x

    @app.function(inputs=["textbox"], outputs=["textbox"], concurrency_id="gpu", concurrency_limit=None)
    def c(x: str) -> str:
        return x

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def d(x: str) -> str:
        return x

    assert app.concurrency_limit("gpu") == 2
    assert app.concurrency_limit("d") is None


def test_api_name_defaults_to_the_function_name_and_fn_index_follows_order() -> None:
    app = surge.App()

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def first(x: str) -> str:
        return x

    @app.function(inputs=["number"], outputs=["number"], api_name="second_one")
    def second(x: float) -> float:
        return x

    assert [(f.fn_index, f.api_name) for f in app.functions] == [(0, "first"), (1, "second_one")]
    assert app.functions[0].max_batch_size == 4 and app.max_threads == 40


def test_progress_parameter_is_not_an_input() -> None:
    app = surge.App()

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def gen(text: str, progress: surge.Progress = surge.Progress()) -> Iterator[str]:  # noqa: B008
        yield text

    function = app.get("gen")
    assert function.progress_arg == "progress"
    assert [p.name for p in function.parameters] == ["text"]
    assert function.is_generator


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inputs": ["textbox", "textbox"], "outputs": ["textbox"]}, "takes 1 inputs but declares 2"),
        ({"inputs": ["video"], "outputs": ["textbox"]}, "fn: unknown component types"),
        # A string where a list goes was taken letter by letter: "unknown component types ['t', 'e', ...]".
        ({"inputs": "textbox", "outputs": ["textbox"]}, r"fn: inputs is a list of component types, e\.g\. inputs="),
        ({"inputs": ["textbox"], "outputs": "textbox"}, r"fn: outputs is a list of component types"),
        ({"inputs": ["textbox"], "outputs": ["textbox"], "api_name": "no spaces"}, "must be letters"),
        ({"inputs": ["textbox"], "outputs": []}, "at least one output"),
        ({"inputs": ["textbox"], "outputs": ["textbox"], "max_batch_size": 0}, "max_batch_size"),
        # A limit of 0 or below let the function's jobs wait for ever, unrun; the others were taken as given.
        ({"inputs": ["textbox"], "outputs": ["textbox"], "concurrency_limit": 0}, "concurrency_limit must be a"),
        ({"inputs": ["textbox"], "outputs": ["textbox"], "concurrency_limit": -3}, "concurrency_limit must be a"),
        ({"inputs": ["textbox"], "outputs": ["textbox"], "concurrency_limit": 2.5}, "concurrency_limit must be a"),
        ({"inputs": ["textbox"], "outputs": ["textbox"], "time_limit_s": 0}, "time_limit_s must be > 0"),
        ({"inputs": ["textbox"], "outputs": ["textbox"], "eta_hint_s": -1}, "eta_hint_s must be > 0"),
        ({"inputs": ["textbox"], "outputs": ["textbox"], "batch_wait_ms": -5}, "batch_wait_ms must be >= 0"),
    ],
)
def test_bad_declarations_fail_at_import_with_a_clear_message(kwargs: dict[str, object], message: str) -> None:
    app = surge.App()

    def fn(x: str) -> str:
        return x

    with pytest.raises(ValueError, match=message):
        app.function(**kwargs)(fn)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"default_concurrency_limit": 0}, "default_concurrency_limit"),
        ({"max_threads": 0}, "max_threads must be"),
        ({"max_wait_s": -5.0}, "max_wait_s must be > 0"),
        ({"max_wait_s": 0}, "max_wait_s must be > 0"),
    ],
)
def test_bad_app_settings_fail_at_import(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        surge.App(**kwargs)  # type: ignore[arg-type]


def test_signatures_gradio_accepts_are_accepted_and_called_as_gradio_calls_them() -> None:
    """As Gradio calls a function, one positional argument per input: a parameter past the inputs keeps
    its default, and `*args` takes inputs past the named ones (both were refused: "takes 2 inputs but
    declares 1")."""
    app = surge.App()

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def tuned(text: str, times: int = 2) -> str:
        return text * times

    @app.function(inputs=["textbox", "number", "number"], outputs=["textbox"])
    def joined(first: str, *rest: float) -> str:
        return first + str(sum(rest))

    assert [p.name for p in app.get("tuned").parameters] == ["text"]
    assert [p.name for p in app.get("joined").parameters] == ["first", "rest_0", "rest_1"]
    assert app.get("tuned").fn(*["ab"]) == "abab" and app.get("joined").fn("s", 1, 2) == "s3"

    def two(a: str, b: str) -> str:
        return a + b

    with pytest.raises(ValueError, match="two takes 2 inputs but declares 1"):
        app.function(inputs=["textbox"], outputs=["textbox"])(two)

    def some(a: str, b: str = "", c: str = "") -> str:
        return a + b + c

    with pytest.raises(ValueError, match="some takes 1 to 3 inputs but declares 4"):
        app.function(inputs=["textbox"] * 4, outputs=["textbox"])(some)

    def early(text: str, progress: surge.Progress = surge.Progress(), *more: str) -> str:  # noqa: B008
        return text

    with pytest.raises(ValueError, match="early: put 'progress' after the 2 input parameter"):
        app.function(inputs=["textbox", "textbox"], outputs=["textbox"])(early)
    app.function(inputs=["textbox"], outputs=["textbox"])(early)  # nothing lands on its place


def test_callables_without_a_plain_name_get_gradios_default_api_name() -> None:
    """A lambda was refused ("api_name '<lambda>' must be letters...") and a functools.partial or a
    callable instance raised AttributeError at import; Gradio names them `lambda`, `partial`, the class."""
    app = surge.App()

    class Shout:
        def __call__(self, text: str) -> str:
            return text.upper()

    def times(text: str, k: int = 1) -> str:
        return text * k

    for fn in (lambda text: text, functools.partial(times, k=2), Shout()):
        app.function(inputs=["textbox"], outputs=["textbox"])(fn)
    assert [f.api_name for f in app.functions] == ["lambda", "partial", "Shout"]
    assert app.get("partial").fn("ab") == "abab"


def test_generators_cannot_be_batched_and_names_cannot_repeat() -> None:
    app = surge.App()

    def gen(x: list[str]) -> Iterator[list[str]]:
        yield x

    with pytest.raises(ValueError, match="generators cannot be batch"):
        app.function(inputs=["textbox"], outputs=["textbox"], batch=True)(gen)

    def same(x: str) -> str:
        return x

    app.function(inputs=["textbox"], outputs=["textbox"])(same)
    with pytest.raises(ValueError, match="used twice"):
        app.function(inputs=["textbox"], outputs=["textbox"])(same)


def test_progress_reports_fractions_steps_and_tqdm() -> None:
    calls: list[tuple[object, ...]] = []
    progress = surge.Progress().bind(lambda *args: calls.append(args))
    progress(0.5, desc="half")
    progress((2, 4), unit="tokens")
    assert list(progress.tqdm(["a", "b"], desc="loop")) == ["a", "b"]
    assert calls[0] == (0.5, None, None, "half", "steps")
    assert calls[1] == (None, 2, 4, None, "tokens")
    assert calls[-1] == (None, 2, 2, "loop", "steps")
    surge.Progress()(0.3)  # unbound: outside a worker it does nothing


def test_load_app_rejects_something_that_is_not_an_app_in_one_line() -> None:
    from surge.application import AppNotFound, load_app

    assert load_app("examples.demo_app").title == "Surge demo"
    with pytest.raises(AppNotFound, match=r"is a \w+; expected a surge\.App or a gr\.Blocks"):
        load_app("examples.demo_app:sim_gpu")
    with pytest.raises(AppNotFound, match=r"no module 'examples.nothing_here'; expected module:attribute"):
        load_app("examples.nothing_here:app")
    with pytest.raises(AppNotFound, match=r"has no missing"):
        load_app("examples.demo_app:missing")
