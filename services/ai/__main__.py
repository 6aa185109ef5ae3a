from services.ai.app import AIApp
from switchboard.service import run

run(AIApp())
