"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app`` in production and under ``make run``;
``flask --app wsgi run`` (``make dev``) for the reloading development server.

Settings come from the environment; DATABASE_URL and REDIS_URL must be set
(``make run`` starts embedded services and sets them for the processes it runs).
"""
from app import create_app

app = create_app()
