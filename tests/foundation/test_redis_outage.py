"""Redis away during a request: sign-in still works (the rate limits fall back to this process's
memory), pages answer, and nothing is a 500. Work asked for after a commit is found again by the
sweep (tests/payments/test_sweep_recovery.py, tests/notifications/test_lost_or_twice.py)."""
from tests.helpers.outages import app_on, closed_port


def test_sign_in_and_pages_work_while_redis_is_away(database_url, tmp_path, factories):
    user = factories.user("patient")
    redis_away = f"redis://127.0.0.1:{closed_port()}/0"
    with app_on(database_url, redis_away, tmp_path) as outage:
        client = outage.test_client()
        assert client.get("/login").status_code == 200
        wrong = client.post("/login", data={"email": user.email, "password": "not-the-password"})
        assert wrong.status_code < 500 and "Sign in" in wrong.get_data(as_text=True)
        signed_in = client.post("/login", data={"email": user.email, "password": "correct-horse-battery"})
        assert signed_in.status_code == 303, signed_in.status_code
        home = client.get(signed_in.headers["Location"])
        assert home.status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "redis" in ready.get_data(as_text=True)
