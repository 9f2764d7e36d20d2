"""What every benchmark needs: DATABASE_URL's server (or an embedded PostgreSQL)
with a scratch database created for the run and dropped after, and REDIS_URL
(or an embedded Redis)."""
from __future__ import annotations

import os
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402


@contextmanager
def scratch_services(prefix: str = "bench-"):
    """Yield (database_url, redis_url, tmp_dir); everything started or created is undone after."""
    from devtools.embedded import start_postgres, start_redis

    started = []
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        pg = start_postgres(tmp / "pg")
        started.append(pg)
        server_url = pg.url
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        rd = start_redis(tmp / "redis")
        started.append(rd)
        redis_url = rd.url
    admin = server_url.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"clinic_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False), redis_url, tmp
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                         "AND pid <> pg_backend_pid()", (name,))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        for service in reversed(started):
            service.stop()
