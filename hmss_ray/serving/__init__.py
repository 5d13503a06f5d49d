"""Serving: the registry's winner behind HTTP with Ray Serve, and the client that calls it.

``serve run`` / ``serve deploy`` import ``hmss_ray.serving.app:build_app``.
"""
