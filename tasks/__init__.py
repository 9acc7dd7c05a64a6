"""Celery entry points for fcsync: thin, named, JSON-argument tasks over worker/ services."""
