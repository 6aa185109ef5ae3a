"""Ingest: the HTTP edge (webhooks in, the /v1 REST API) and IngestService (sources)."""
