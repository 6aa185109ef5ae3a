from services.analytics.app import AnalyticsApp
from switchboard.service import run

run(AnalyticsApp())
