"""The HTTP API (v1): routes over the services; see :func:`superfactory.live.api.app.create_app`."""
