"""The HTTP gateway in front of the services: Starlette on uvicorn, served by the ingest process.

``routing.py`` lists every route; ``webhooks.py`` receives provider webhooks (plain ASGI, the
hottest path) and hands them to the intake in-process; ``transcoder.py`` serves the ``/v1`` REST
API by calling the services' RPCs with the caller's key (``contract.py`` checks each request
against ``schemas.py``, generated from the protos; ``openapi.py`` describes it); ``dashboard.py``
serves the static dashboard; ``responses.py`` shapes every error as JSON; ``context.py`` is what
a handler can reach.
"""
