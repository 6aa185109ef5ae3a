"""The AI service process."""

from __future__ import annotations

import functools
import logging

from plugins.ai.spec import ProviderSettings
from plugins.manager import load_registry
from services.ai.engine import AIEngine, ResponseCache
from services.ai.gate import ProviderGate, ProviderLimits
from services.ai.servicer import AIServicer
from services.ai.router_client import GrpcCorrections
from services.ai.store import AIStore
from services.ai.tenant_models import TenantModels, train_in_subprocess
from switchboard.circuit import CircuitBreakers
from switchboard.masterkey import secret_box
from switchboard.retention import periodic
from switchboard.service import Runtime, ServiceApp
from switchboard.settings import SettingsError
from switchboard.v1 import ai_pb2_grpc as rpc

logger = logging.getLogger(__name__)


def provider_limits(names: list[str], settings: ProviderSettings, processes: int = 1) -> dict[str, ProviderLimits]:
    """``SWITCHBOARD_AI_<PROVIDER>_REQUESTS_PER_MINUTE`` / ``_TOKENS_PER_MINUTE``, where set: the budget of the
    whole platform, of which each of the AI service's ``processes`` takes its share (the router's calls are
    spread over them by the shared port)."""
    limits = {}
    for name in names:
        rpm = settings.get(name, "requests_per_minute")
        tpm = settings.get(name, "tokens_per_minute")
        if rpm or tpm:
            try:
                limits[name] = ProviderLimits(float(rpm or 1e9) / processes, float(tpm or 1e12) / processes)
            except ValueError:
                raise SettingsError(f"SWITCHBOARD_AI_{name.upper()}_REQUESTS_PER_MINUTE and _TOKENS_PER_MINUTE "
                                    f"must be numbers, got {rpm!r} and {tpm!r}") from None
            if min(limits[name].requests_per_minute, limits[name].tokens_per_minute) <= 0:
                raise SettingsError(f"SWITCHBOARD_AI_{name.upper()}_* limits must be positive")
    return limits


class AIApp(ServiceApp):
    name = "ai"
    grpc_services = ["switchboard.v1.AIService"]

    def register(self, server, runtime: Runtime) -> None:
        s = runtime.settings
        ai = s.ai
        registry = load_registry(env=ai.provider_variables)
        registry.ai_provider(ai.provider)  # an unknown SWITCHBOARD_AI_PROVIDER stops the start, clearly
        # Tenants' own provider keys are sealed at rest with the master key.
        self.store = store = AIStore(runtime.pool, secret_box(s))
        # Tenants' own local models, trained from their corrections in a process of their own.
        self.models = TenantModels(runtime.pool, GrpcCorrections(runtime.clients),
                                   train_in_subprocess(ai.training_data))
        engine = AIEngine(
            registry, store, default_chain=(ai.provider,),
            gate=ProviderGate(provider_limits(list(registry.ai_providers), ProviderSettings(ai.provider_variables),
                                              s.process_count("ai"))),
            circuits=CircuitBreakers(threshold=s.circuit_threshold, cooldown_s=s.circuit_cooldown_s),
            cache=ResponseCache(ai.cache_ttl_s), timeout_s=ai.timeout_s, max_wait_s=ai.max_wait_s,
            local_models=self.models,
        )
        rpc.add_AIServiceServicer_to_server(AIServicer(engine, store, self.models), server)

    async def migrated(self, runtime: Runtime) -> None:
        await self.store.reseal()

    async def start(self, runtime: Runtime) -> None:
        runtime.singleton("ai.conversation-pruning",
                          functools.partial(periodic, 3600, self.store.prune_turns, name="conversation pruning"))
        # Once a day, however many AI processes run: tenants with corrections newer than their model.
        runtime.singleton("ai.model-retraining",
                          functools.partial(periodic, 86400, self.models.retrain_due, name="tenant model retraining"))

    async def close(self) -> None:
        await self.models.close()
