"""AIService over gRPC: a thin translation to and from :mod:`services.ai.classify`."""

from __future__ import annotations

import json

from plugins.ai.spec import ClassifyInput
from services.ai.classify import Classifier
from switchboard.errors import InvalidRequest
from switchboard.rpc import servicer
from switchboard.v1 import ai_pb2 as pb, ai_pb2_grpc as rpc


@servicer
class AIServicer(rpc.AIServiceServicer):
    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    async def Classify(self, request, context):
        try:
            payload = json.loads(request.payload_json or "null")
        except ValueError:
            raise InvalidRequest("payload_json is not valid JSON") from None
        answer = await self.classifier.classify(ClassifyInput(request.tenant_id, request.event_type, payload))
        c = answer.classification
        return pb.Classification(category=c.category, priority=c.priority, sentiment=c.sentiment,
                                 summary=c.summary, provider=answer.provider)
