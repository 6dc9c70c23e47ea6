"""The gateway: an HTTP service for operators and other systems (``python -m gateway``)."""
