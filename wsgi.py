"""WSGI entry point: ``gunicorn wsgi:app`` in production, ``flask --app wsgi run`` in dev.

Settings come from the environment; DATABASE_URL and REDIS_URL must be set
(``make run`` starts embedded services and sets them for the processes it runs).
"""
from app import create_app

app = create_app()
