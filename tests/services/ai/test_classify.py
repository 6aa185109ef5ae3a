import pytest

from plugins import hookimpl
from plugins.ai.spec import ClassifyInput
from plugins.manager import get_plugin_manager, load_registry
from services.ai.classify import Classifier


async def test_offline_provider_classifies_deterministically() -> None:
    classifier = Classifier(load_registry())
    answer = await classifier.classify(ClassifyInput("t", "conversation.created",
                                                     {"text": "URGENT: the site is down and I want a refund"}))
    assert answer.provider == "offline"
    assert answer.classification.priority == "urgent"
    assert answer.classification.sentiment == "negative"
    again = await classifier.classify(ClassifyInput("t", "invoice.paid", {"note": "thanks, great"}))
    assert (again.classification.category, again.classification.sentiment) == ("billing", "positive")


async def test_a_failing_provider_falls_back_to_offline() -> None:
    class Broken:
        name = "broken"

        async def classify(self, request):
            raise RuntimeError("provider down")

    class Plugin:
        @hookimpl
        def register_ai_providers(self, register):
            register(Broken())

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Plugin())
    answer = await Classifier(load_registry(pm), "broken").classify(ClassifyInput("t", "x", {}))
    assert answer.provider == "offline"
    with pytest.raises(LookupError):
        Classifier(load_registry(pm), "missing")
