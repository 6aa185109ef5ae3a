from services.ingest.app import IngestApp
from switchboard.service import run

run(IngestApp())
