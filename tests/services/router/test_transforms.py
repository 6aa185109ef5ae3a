import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from services.router import transforms
from services.router.transforms import OUTPUTS, Rendered, Transform, TransformError, check_template
from switchboard.errors import InvalidRequest

STRIPE_INVOICE = {
    "id": "evt_1",
    "type": "invoice.payment_failed",
    "data": {"object": {"id": "in_123", "amount_due": 4200, "customer_email": "ana@example.com",
                        "items": {"data": [{"price": "p_1"}, {"price": "p_2"}]}, "discount": None}},
}


def context(payload=None, ai=None):
    return {
        "event": {"id": "evt_01", "type": "invoice.payment_failed", "source_id": "src_1",
                  "received_at": "2024-05-01T12:00:00+00:00", "occurred_at": "2024-05-01T11:59:58+00:00",
                  "conversation_key": None},
        "payload": STRIPE_INVOICE if payload is None else payload,
        "ai": ai,
    }


AI = {"category": "billing", "priority": "high", "sentiment": "negative", "confidence": 0.92,
      "summary": 'Card "declined" — customer asks to retry'}


def render(source, output="json", **kwargs):
    return Transform(source, output).render(context(**kwargs))


def test_outputs() -> None:
    assert OUTPUTS == ("json", "text")


def test_json_output_is_parsed_and_reserialised_compactly() -> None:
    rendered = render('{\n  "id": {{ payload.data.object.id | tojson }},\n'
                      '  "amount": {{ payload.data.object.amount_due }}\n}')
    assert rendered == Rendered({"id": "in_123", "amount": 4200}, '{"id":"in_123","amount":4200}')


def test_stripe_to_slack_transform() -> None:
    source = ('{"text": {{ ("Invoice " ~ payload.data.object.id ~ " failed: " ~ ai.summary) | tojson }},\n'
              ' "priority": {{ ai.priority | tojson }}}')
    rendered = render(source, ai=AI)
    assert rendered.payload == {"text": 'Invoice in_123 failed: Card "declined" — customer asks to retry',
                                "priority": "high"}
    assert rendered.body == json.dumps(rendered.payload, separators=(",", ":"), ensure_ascii=False)
    # The same with a filter block, and unclassified events render with the summary empty.
    block = '{"text": {% filter tojson %}Invoice {{ payload.data.object.id }} failed: {{ ai.summary }}{% endfilter %}}'
    assert render(block, ai=AI).payload["text"] == rendered.payload["text"]
    assert render(block, ai=None).payload == {"text": "Invoice in_123 failed: "}


def test_tojson_quotes_escapes_and_keeps_unicode() -> None:
    payload = {"s": 'say "hi"\nnew line \\ back', "u": "café ☕", "n": None, "list": [1, "a", True]}
    rendered = render('[{{ payload.s | tojson }}, {{ payload.u | tojson }}, {{ payload.n | tojson }},'
                      ' {{ payload.list | tojson }}, {{ payload | tojson }}]', payload=payload)
    assert rendered.payload == [payload["s"], "café ☕", None, [1, "a", True], payload]
    assert "café ☕" in rendered.body  # not \u-escaped
    assert render('{{ "<b>&" | tojson }}', "text").body == '"<b>&"'  # no HTML escaping


def test_missing_fields_are_empty_or_null_not_errors() -> None:
    rendered = render('{"a": {{ payload.nope.deeper.still | tojson }}, "b": {{ ai.summary | tojson }},'
                      ' "c": {{ [payload.x, 1] | tojson }}, "d": "{{ payload.nope.x }}",'
                      ' "e": "{{ payload.data.object.discount }}",'
                      ' "f": {{ payload.x | default("none") | tojson }}}', ai=None)
    assert rendered.payload == {"a": None, "b": None, "c": [None, 1], "d": "", "e": "", "f": "none"}
    text = render("[{{ payload.a.b.c }}|{{ ai.category }}|{{ 'x' ~ payload.nope ~ payload.data.object.discount }}]",
                  "text")
    assert text.payload == {"text": "[||x]"}


def test_text_output_is_stripped_and_wrapped() -> None:
    source = """
{% for item in payload.data.object['items'].data %}{{ loop.index }}. {{ item.price }}
{% endfor %}Received {{ event.received_at }} ({{ event.type }})
"""
    rendered = render(source, "text")
    text = "1. p_1\n2. p_2\nReceived 2024-05-01T12:00:00+00:00 (invoice.payment_failed)"
    assert rendered == Rendered({"text": text}, text)


def test_a_key_wins_over_a_dict_method() -> None:
    assert render("{{ payload.data.object.items.data | length }}", "text").body == "2"
    assert render("{{ payload.data.object.keys() | list | length }}", "text").body == "5"


@pytest.mark.parametrize("source, line", [
    ("{{ payload.id ", 1),
    ('{\n  "a": 1,\n  "b": {% if %}\n}', 3),
    ("{\n{{ payload | no_such_filter }}\n}", 2),
    ("{% for x in payload %}\n{{ x }}\n", 2),
])
def test_compile_errors_name_the_line(source: str, line: int) -> None:
    with pytest.raises(InvalidRequest, match=f"^template line {line}: "):
        check_template(source, "json")
    with pytest.raises(InvalidRequest, match=f"^template line {line}: "):
        Transform(source, "text")


@pytest.mark.parametrize("source, output", [("", "json"), ("  \n ", "text"), ("x" * 50_001, "text"),
                                            ("{{ 1 }}", "xml"), ("{{ 1 }}", "")])
def test_check_template_rejects_empty_huge_and_unknown_outputs(source: str, output: str) -> None:
    with pytest.raises(InvalidRequest):
        check_template(source, output)


def test_check_template_accepts_a_valid_template() -> None:
    check_template("x" * 50_000, "text")
    check_template('{"id": {{ payload.id | tojson }}}', "json")


def test_compiled_templates_are_cached() -> None:
    source = '{"cached": {{ event.id | tojson }}}'
    assert Transform(source, "json")._template is Transform(source, "json")._template
    assert Transform(source, "text")._template is not Transform(source, "json")._template


@pytest.mark.parametrize("source, message", [
    ("a\nb\n{{ payload.data.object.amount_due / 0 }}", r"^line 3: ZeroDivisionError: division by zero"),
    ("{{ no_such_function() }}", r"^line 1: 'no_such_function' is undefined"),
    ("{{ payload.data.object.nope() }}", r"^line 1: .dict object. has no attribute .nope."),
    ("\n{{ payload.data.object.id + 1 }}", r"^line 2: TypeError"),
    ("{% include 'other' %}", r"^line 1: "),
    ("{{ payload.data.object['items'].data.append(1) }}", r"^line 1: .*unsafe"),
])
def test_runtime_errors_are_transform_errors_with_the_line(source: str, message: str) -> None:
    with pytest.raises(TransformError, match=message):
        render(source, "text")


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ payload.__init__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ ''|attr('__class__') }}",
    "{{ payload.nope.__class__.__base__ }}",
    "{{ (1).__class__.__subclasses__() }}",
    "{{ range.__self__ }}",
    "{{ joiner.__init__.__globals__['__builtins__'] }}",
    "{{ namespace.__init__ }}",
    "{{ lipsum.__globals__ }}",
])
def test_sandbox_escapes_fail_without_leaking(source: str) -> None:
    try:
        rendered = render(source, "text")
    except TransformError as exc:
        output = str(exc)
    else:
        output = rendered.body
    assert not re.search(r"\b(os|subprocess|Popen|environ|__builtins__|sys)\b|<class|<function|<module", output)


def test_sandbox_escapes_are_reported_as_unsafe() -> None:
    with pytest.raises(TransformError, match="unsafe"):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", "text")
    with pytest.raises(TransformError, match="unsafe"):
        render("{{ cycler.__init__.__globals__ }}", "text")


def test_the_event_cannot_be_changed() -> None:
    payload = {"a": [1], "b": {"c": 1}}
    for source in ("{{ payload.a.append(2) }}", "{{ payload.b.update(c=2) }}", "{{ payload.b.clear() }}"):
        with pytest.raises(TransformError):
            render(source, "text", payload=payload)
    assert payload == {"a": [1], "b": {"c": 1}}


@pytest.mark.parametrize("source, message", [
    ("{{ payload.data }}",
     "did not produce JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ('{"a": {{ payload.nope }}}', "did not produce JSON: Expecting value at line 1 column 7"),
    ('{"a": "{{ ai.summary }}"}', "did not produce JSON"),  # an unescaped quote
    ("[NaN]", "did not produce JSON: NaN is not JSON"),
    ("[1e400]", "did not produce JSON: a number is out of range"),
    ("{% if false %}{}{% endif %}", "did not produce JSON"),
])
def test_output_that_is_not_json_is_an_error(source: str, message: str) -> None:
    with pytest.raises(TransformError, match=message):
        render(source, "json", ai=AI)


@pytest.mark.parametrize("source, message", [
    ("{{ 'x' * 2000000 }}", r"the result of \* would be over 1 MiB"),
    ("{{ [0] * 10 ** 8 }}", r"the result of \* would be over 1 MiB"),
    ("{{ 10 ** 100000 }}", r"the result of \*\* would be over 16,384 bits"),
    ("{% set ns = namespace(v='x') %}{% for i in range(40) %}{% set ns.v = ns.v ~ ns.v %}{% endfor %}",
     "the result of ~ would be over 1 MiB"),
    ("{% set ns = namespace(v='x') %}{% for i in range(40) %}{% set ns.v = ns.v + ns.v %}{% endfor %}",
     r"the result of \+ would be over 1 MiB"),
    ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "^rendered output is over 1 MiB$"),
    ("{% for i in range(10 ** 9) %}{% endfor %}", "Range too big"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "over 1,000,000 steps"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nested too deeply"),
])
def test_runaway_templates_hit_a_limit(source: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transforms, "MAX_RENDER_SECONDS", 60.0)  # the limit under test, not the clock, must stop it
    with pytest.raises(TransformError, match=message):
        render(source, "text")


def test_multibyte_output_is_measured_in_bytes() -> None:
    with pytest.raises(TransformError, match="over 1 MiB"):
        render("{{ 'é' * 600000 }}", "text")  # 600,000 characters, 1.2 MB


def test_rendering_has_a_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transforms, "MAX_RENDER_SECONDS", 0.05)
    exponential = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    with pytest.raises(TransformError, match="rendering took over 0.05 s"):
        render(exponential, "text")


def test_budgets_are_per_render(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transforms, "MAX_STEPS", 1_000)
    transform = Transform("{% for i in range(60) %}{% for j in range(9) %}{% endfor %}{% endfor %}ok", "text")
    for _ in range(3):  # about 660 steps each: would fail if the count carried over
        assert transform.render(context()).body == "ok"
    with pytest.raises(TransformError, match="over 1,000 steps"):
        Transform("{% for i in range(200) %}{% for j in range(9) %}{% endfor %}{% endfor %}", "text").render(context())


def test_error_messages_are_short() -> None:
    with pytest.raises(TransformError) as caught:
        render("{{ payload[" + "'x' ~ " * 400 + "'y'].z() }}", "text")
    assert len(str(caught.value)) <= 300
    with pytest.raises(InvalidRequest) as invalid:
        check_template("{{ " + "x." * 1000 + " }}", "text")
    assert len(invalid.value.message) <= 300


def test_common_jinja_features_still_work() -> None:
    source = ("{{ payload.data.object.amount_due / 100 }} {{ '%.2f' | format(42) }} {{ 'abc' | upper }} "
              "{{ payload.data.object.customer_email | truncate(8, true, '…', 0) }} {{ [3, 1, 2] | sort | join(',') }} "
              "{{ event.id if event.id else 'none' }} {{ '{}-{}'.format(1, 2) }}")
    assert render(source, "text").body == "42.0 42.00 ABC ana@exa… 1,2,3 evt_01 1-2"


def test_the_examples_in_the_docs_render() -> None:
    from pathlib import Path

    docs = Path(__file__).parents[3] / "docs" / "routing.md"
    section = docs.read_text().split("## Transforms", 1)[1].split("\n## ", 1)[0]
    examples = re.findall(r"\(`output: (json|text)`\):\n\n```jinja\n(.*?)```", section, re.S)
    assert len(examples) == 2
    payload = {"data": {"object": {"id": "in_1", "customer_email": "ana@example.com", "amount_due": 4200,
                                   "currency": "eur"}},
               "repository": {"full_name": "acme/app"}, "action": "opened",
               "issue": {"number": 7, "title": "Crash on save", "labels": [{"name": "bug"}]}}
    for output, source in examples:
        for ai in (AI, None):
            assert render(source, output, payload=payload, ai=ai).body


# Each builds, or would have Jinja fold at compile time, a value of hundreds of MB or more from a short source.
HUGE = [
    "{{ 'x' | center(100000000) }}",
    "{{ 'x' | center(100000000) | length }}",
    "{% filter center(100000000) %}x{% endfilter %}",
    "{{ 'x' * 100000000 }}",
    "{{ 'x'.encode() * 100000000 }}",
    "{{ range(100000000) | list }}",
    "{{ '%100000000s' % 'x' }}",
    "{{ '%0100000000d' % 1 }}",
    "{{ '%.100000000f' % 1.5 }}",
    "{{ '%100000000s' | format('x') }}",
    "{{ 'x' | indent(100000000, true) }}",
    "{{ 'x\ny' | indent(100000000) }}",
    "{{ 'x'.center(100000000) }}",
    "{{ 'x'.zfill(100000000) }}",
    "{{ '\t'.expandtabs(100000000) }}",
    "{{ '{:>100000000}'.format('x') }}",
    "{{ '{0:>{1}}'.format('x', 100000000) }}",
    "{{ (1).to_bytes(100000000, 'big') | length }}",
    "{{ ('x' * 1000).translate({120: 'y' * 1000000}) | length }}",
    "{{ range(100000) | join('x' * 1000000) }}",
    "{{ ('x' * 1000) | replace('', 'y' * 100000) | length }}",
    "{{ ('x ' * 100000) | wordwrap(1, wrapstring='y' * 1000) | length }}",
    "{{ [1] | batch(100000000, 'x') | list | length }}",
    "{{ [[]] | slice(100000000) | list | length }}",
    "{% autoescape 'x' | center(100000000) %}{% endautoescape %}",
    "{{ ['x' * 1000000] * 1000 }}",
    "{{ (['x' * 1000000] * 1000) | tojson | length }}",
    "{{ (['x' * 1000000] * 1000) | string | length }}",
    "{{ ('' ~ (['x' * 1000000] * 1000)) | length }}",
    "{% set big = 'x' * 1000000 %}{% macro m() %}{% for i in range(1000) %}{{ big }}{% endfor %}{% endmacro %}"
    "{{ m() | length }}",
    "{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = ns.l + ['x' * 1000000 ~ i] %}{% endfor %}"
    "{{ ns.l | length }}",
    "{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l, 'x' * 1000000 ~ i] %}{% endfor %}"
    "{{ ns.l | length }}",
    "{% set ns = namespace(l=[]) %}{% set big = 'x' * 1000000 %}{% for i in range(1000) %}"
    "{% set ns.l = [ns.l, big[i:]] %}{% endfor %}{{ ns.l | length }}",
    "{{ ('\u2615' * 1000000) | list | length }}",
]


@pytest.mark.parametrize("source", HUGE)
def test_templates_that_would_build_huge_values_fail_with_a_short_error(source: str) -> None:
    with pytest.raises((InvalidRequest, TransformError)) as caught:
        render(source, "text")
    assert len(str(caught.value)) <= 300


def test_compiling_and_rendering_huge_templates_keeps_memory_bounded(tmp_path) -> None:
    # A fresh interpreter, so the high-water mark is this test's; the address space is limited so that code
    # without the bounds fails here with MemoryError rather than taking the machine's memory.
    script = tmp_path / "huge.py"
    script.write_text(textwrap.dedent('''
        import json, resource, sys

        def peak_kib():
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

        from services.router.transforms import Transform, TransformError
        from switchboard.errors import InvalidRequest

        context = {"event": {"id": "evt_1"}, "payload": {"a": 1}, "ai": None}
        assert Transform("{{ payload.a }}", "text").render(context).body == "1"
        with open("/proc/self/status") as status:
            size_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
        limit = (size_kib + 1536 * 1024) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        before = peak_kib()
        outcomes = []
        for round in range(3):  # distinct sources each round: every one is compiled and cached anew
            for source in json.loads(sys.argv[1]):
                source = source.replace("100000000", str(100000000 + round))
                try:
                    Transform(source, "text").render(context)
                    outcomes.append("rendered")
                except (InvalidRequest, TransformError) as exc:
                    outcomes.append(str(exc)[:80])
        print(json.dumps({"grew_kib": peak_kib() - before, "outcomes": outcomes}))
    '''))
    done = subprocess.run([sys.executable, str(script), json.dumps(HUGE)], capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).parents[3])
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert "rendered" not in result["outcomes"]
    assert not any("out of memory" in outcome for outcome in result["outcomes"]), result["outcomes"]
    assert result["grew_kib"] < 50 * 1024, result


def test_sum_adds_up_lists_in_one_go_and_within_the_limit() -> None:
    assert render("{{ [[1, 2], [3]] | sum(start=[]) }}", "text").body == "[1, 2, 3]"
    assert render("{{ [{'a': [1]}, {'a': [2]}] | sum(attribute='a', start=[0]) }}", "text").body == "[0, 1, 2]"
    assert render("{{ [1, 2, 3.5] | sum }}", "text").body == "6.5"
    # Half a million one-item lists: sum() alone would copy the growing total half a million times.
    assert render("{{ ([[1]] * 500000) | sum(start=[]) | length }}", "text").body == "500000"
    with pytest.raises(TransformError, match="the result of the sum filter would be over 1 MiB"):
        render("{{ ([{'a': [0] * 1000000}] * 3) | sum(attribute='a', start=[]) | length }}", "text")
