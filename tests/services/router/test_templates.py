from pathlib import Path

from services.router import templates
from services.router.templates import TemplateStore
from switchboard.database import apply_migrations

MIGRATIONS = Path(__file__).parents[3] / "services/router/migrations"


async def test_the_template_cache_is_bounded_by_the_size_of_its_sources(pool, monkeypatch) -> None:
    await apply_migrations(pool, "router", MIGRATIONS)
    monkeypatch.setattr(templates, "CACHE_SOURCE_CHARS", 120_000)
    store = TemplateStore(pool)
    made = [await store.create("t1", f"big {i}", f"{i} " + "x" * 49_990, "text") for i in range(6)]
    for template in made:
        assert (await store.cached("t1", template.id)).source == template.source
        assert store.cached_source_chars <= 120_000
    # Small ones are kept together, and a change is seen at once by this process.
    small = [await store.create("t1", f"small {i}", "{{ payload.a }}", "text") for i in range(3)]
    for template in small:
        await store.cached("t1", template.id)
    changed = await store.update("t1", small[0].id, None, "{{ payload.b }}", None)
    assert (await store.cached("t1", small[0].id)).source == changed.source == "{{ payload.b }}"
    await store.delete("t1", small[1].id)
    assert store.cached_source_chars <= 120_000

    # Over the bound, only the least recently used go: the small ones stay cached beside a big one.
    await store.cached("t1", made[0].id)
    assert {small[0].id, small[2].id} <= {key[1] for key in store._cache}


def test_the_cache_of_compiled_templates_is_bounded_by_count_and_source_size(monkeypatch) -> None:
    from services.router import transforms

    monkeypatch.setattr(transforms, "_COMPILED", transforms._CompiledCache())
    monkeypatch.setattr(transforms, "MAX_CACHED_SOURCE_CHARS", 150_000)
    monkeypatch.setattr(transforms, "MAX_CACHED_TEMPLATES", 5)
    big = [f"{{{{ {i} }}}}" + "x" * 49_990 for i in range(4)]
    for source in big:
        transforms.Transform(source, "text")
    assert len(transforms._COMPILED) == 3 and transforms._COMPILED.source_chars <= 150_000
    kept = transforms.Transform(big[-1], "text")._template
    for i in range(10):
        transforms.Transform(f"{{{{ {i} }}}}", "text")
    assert len(transforms._COMPILED) == 5
    # The least recently used went first: the big one was compiled again.
    assert transforms.Transform("{{ 9 }}", "text")._template is transforms.Transform("{{ 9 }}", "text")._template
    assert kept is not transforms.Transform(big[-1], "text")._template
