from services.router.app import RouterApp
from switchboard.service import run

run(RouterApp())
