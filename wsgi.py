"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app`` in production and under ``make run``;
``flask --app wsgi run`` (``make dev``) for the reloading development server.

Settings come from the environment; DATABASE_URL and REDIS_URL must be set
(``make run`` starts embedded services and sets them for the processes it runs).
Here APP_ENV defaults to ``production`` (its secrets required, no /dev pages, HSTS): a server
started without it is a production server. ``make run`` / ``make dev`` (devtools/run.py) set
``APP_ENV=development`` for the processes they start; tests set their own.
"""
import os

from app import create_app
from app.settings import Settings

app = create_app(Settings.from_env({**os.environ, "APP_ENV": os.environ.get("APP_ENV") or "production"}))
