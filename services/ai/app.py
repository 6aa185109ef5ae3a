"""The AI service process."""

from __future__ import annotations

from pathlib import Path

from plugins.manager import load_registry
from services.ai.classify import Classifier
from services.ai.servicer import AIServicer
from switchboard.service import Runtime, ServiceApp
from switchboard.v1 import ai_pb2 as pb, ai_pb2_grpc as rpc


class AIApp(ServiceApp):
    name = "ai"
    schema = "ai"
    migrations = Path(__file__).parent / "migrations"
    grpc_services = [pb.DESCRIPTOR.services_by_name["AIService"].full_name]

    def register(self, server, runtime: Runtime) -> None:
        classifier = Classifier(load_registry(), runtime.settings.ai_provider)
        rpc.add_AIServiceServicer_to_server(AIServicer(classifier), server)
