"""The embedded path starts and stops cleanly, even when servers are provided,
so neither path rots."""
import os
import subprocess
import sys

import psycopg
import pytest
import redis

from devtools.embedded import start_postgres, start_redis


def test_embedded_postgres_and_redis_start_serve_and_stop(tmp_path):
    pg = start_postgres(tmp_path / "pg")
    rd = start_redis(tmp_path / "redis")
    try:
        with psycopg.connect(pg.url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            assert version.startswith("16")
            # The range trick the booking constraint needs works on this build.
            conn.execute("CREATE TABLE t (p int, r tstzrange, EXCLUDE USING gist "
                         "(int4range(p, p, '[]') WITH &&, r WITH &&))")
        client = redis.Redis.from_url(rd.url)
        assert client.ping()
        client.close()
    finally:
        rd.stop()
        pg.stop()
    assert rd.process is None and not rd.socket_path.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.server.get_uri() if pg.server else f"postgresql://postgres@/postgres?host={tmp_path / 'pg'}",
                        connect_timeout=2)


def test_the_run_command_starts_the_embedded_services_and_hands_the_app_their_urls(tmp_path):
    """What make run does when no URL is set (devtools.run.service_env), in a separate
    process, so its exit stops what it started: nothing is left running."""
    script = (
        "import pathlib\n"
        "from app import create_app\n"
        "from app.settings import ConfigError, Settings\n"
        "from app.extensions import db\n"
        "from devtools.run import service_env\n"
        "from sqlalchemy import text\n"
        "import redis\n"
        f"instance = pathlib.Path({str(tmp_path)!r})\n"
        "settings = Settings(APP_ENV='test', INSTANCE_PATH=instance).checked()\n"
        "try:\n"
        "    create_app(settings)\n"
        "except ConfigError as refused:\n"
        "    print('refused', 'DATABASE_URL' in str(refused) and 'REDIS_URL' in str(refused))\n"
        "env = service_env(settings)\n"
        "app = create_app(Settings.from_env({**env, 'APP_ENV': 'test', 'INSTANCE_PATH': str(instance)}))\n"
        "with app.app_context():\n"
        "    print('db', db.session.execute(text('select 42')).scalar())\n"
        "    print('redis', redis.Redis.from_url(app.config['REDIS_URL']).ping())\n"
        "    print('socket', app.config['REDIS_URL'])\n"
        "    db.session.remove(); db.engine.dispose()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.returncode == 0, out.stderr[-2000:]
    said = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert said["refused"] == "True", out.stdout        # the app never starts a service itself
    assert said["db"] == "42" and said["redis"] == "True", out.stdout
    socket_path = said["socket"].removeprefix("unix://")
    assert str(tmp_path) in socket_path
    assert not os.path.exists(socket_path), "redis-server outlived the process that started it"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in ps, "an embedded service is still running"
