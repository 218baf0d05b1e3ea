"""The API's routers, one module per group of routes (:func:`fomm.app.api.create_app` includes
them); what they share comes as FastAPI dependencies from :mod:`fomm.app.routes.deps`."""
