"""``fomm serve``: the HTTP API and web page (FastAPI), a bounded job queue, one model per process.

The FastAPI app is built by :func:`fomm.app.api.create_app`; importing this package alone needs
nothing beyond fomm's own requirements.
"""
