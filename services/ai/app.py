"""The AI service process."""

from __future__ import annotations

from plugins.manager import load_registry
from services.ai.classify import Classifier
from services.ai.servicer import AIServicer
from switchboard.service import Runtime, ServiceApp
from switchboard.v1 import ai_pb2_grpc as rpc


class AIApp(ServiceApp):
    name = "ai"
    grpc_services = ["switchboard.v1.AIService"]

    def register(self, server, runtime: Runtime) -> None:
        classifier = Classifier(load_registry(), runtime.settings.ai_provider)
        rpc.add_AIServiceServicer_to_server(AIServicer(classifier), server)
