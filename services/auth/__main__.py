from services.auth.app import AuthApp
from switchboard.service import run

run(AuthApp())
