"""The HTTP API of the live service (FastAPI), built by :func:`controller.api.app.create_app`."""
