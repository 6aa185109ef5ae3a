"""The HTTP edge: Starlette on uvicorn.

``routing.py`` lists every route with the scope it needs; ``webhooks.py``
receives provider webhooks; ``rest.py`` is the ``/v1`` API; ``auth.py``
verifies bearer keys; ``responses.py`` shapes every error as JSON.
"""
