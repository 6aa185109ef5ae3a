from services.delivery.app import DeliveryApp
from switchboard.service import run

run(DeliveryApp())
