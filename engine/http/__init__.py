"""The HTTP API behind ``flowslot serve`` (optional extra ``flowslot[http]``: Starlette + uvicorn).

``create_app(app_or_client, api_keys=[...])`` returns a Starlette ASGI app:
events, signals and reads as JSON. ``flowslot serve`` runs it under uvicorn;
a service of your own can mount it instead (``Mount("/flowslot", app=...)``).
"""

from engine.http.app import create_app

__all__ = ["create_app"]
