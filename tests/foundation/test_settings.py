"""The factory in development, test and production modes."""
import pytest

from app import create_app
from app.settings import ConfigError, Settings

STRIPE = {"STRIPE_SECRET_KEY": "sk_live_x", "STRIPE_PUBLISHABLE_KEY": "pk_live_x",
          "STRIPE_WEBHOOK_SECRET": "whsec_x"}
FIELD = {"FIELD_KEYS": "prod1:cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHA=", "LOOKUP_HASH_KEY": "prod-lookup-hash-key-0123456789abcdef"}


def test_production_refuses_to_start_without_its_secrets_and_names_them(tmp_path):
    with pytest.raises(ConfigError) as refused:
        create_app(Settings.from_env({"APP_ENV": "production", "INSTANCE_PATH": str(tmp_path)}))
    message = str(refused.value)
    for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "AUDIT_HMAC_KEY", "STRIPE_SECRET_KEY",
                 "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET", "FIELD_KEYS", "LOOKUP_HASH_KEY"):
        assert name in message


def test_production_names_only_the_missing_secret(tmp_path):
    env = {"APP_ENV": "production", "SECRET_KEY": "s", "DATABASE_URL": "postgresql://db/x",
           "AUDIT_HMAC_KEY": "k", "INSTANCE_PATH": str(tmp_path), **STRIPE, **FIELD}
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    assert "REDIS_URL" in str(refused.value)
    assert "SECRET_KEY" not in str(refused.value)


def test_production_with_secrets_builds_without_starting_embedded_services(tmp_path, monkeypatch):
    import devtools.embedded as embedded

    def forbidden(*args, **kwargs):
        raise AssertionError("production must never start an embedded service")

    monkeypatch.setattr(embedded, "ensure_services", forbidden)
    app = create_app(Settings.from_env({
        "APP_ENV": "production", "SECRET_KEY": "prod-secret", "AUDIT_HMAC_KEY": "prod-audit",
        "DATABASE_URL": "postgresql://clinic@127.0.0.1:1/clinic", "REDIS_URL": "redis://127.0.0.1:1/0",
        "INSTANCE_PATH": str(tmp_path), **STRIPE, **FIELD}))
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    assert not app.testing


def test_unknown_mode_is_refused():
    with pytest.raises(ConfigError, match="APP_ENV"):
        Settings.from_env({"APP_ENV": "staging"})


def test_development_fills_stable_secrets_in_the_instance_folder(tmp_path):
    first = Settings.from_env({"INSTANCE_PATH": str(tmp_path)})
    second = Settings.from_env({"INSTANCE_PATH": str(tmp_path)})
    assert first.APP_ENV == "development"
    assert first.SECRET_KEY and first.SECRET_KEY == second.SECRET_KEY
    assert first.AUDIT_HMAC_KEY and first.AUDIT_HMAC_KEY != first.SECRET_KEY


def test_timings_are_settings(tmp_path):
    settings = Settings.from_env({"INSTANCE_PATH": str(tmp_path), "IDLE_LOGOFF_STAFF_SECONDS": "2"})
    assert settings.IDLE_LOGOFF_STAFF.total_seconds() == 2
    assert settings.IDLE_LOGOFF_PATIENT.total_seconds() == 30 * 60


def test_test_mode_app_uses_the_given_services(app):
    assert app.testing
    assert app.config["APP_ENV"] == "test"
    assert "clinic_test_" in app.config["SQLALCHEMY_DATABASE_URI"]


def test_production_refuses_the_sandbox_key(tmp_path):
    env = {"APP_ENV": "production", "SECRET_KEY": "s", "DATABASE_URL": "postgresql://db/x",
           "REDIS_URL": "redis://r", "AUDIT_HMAC_KEY": "k", "INSTANCE_PATH": str(tmp_path),
           **STRIPE, **FIELD, "STRIPE_SECRET_KEY": "sk_test_sandbox"}
    with pytest.raises(ConfigError, match="sandbox"):
        Settings.from_env(env)


def test_stripe_defaults_to_real_stripe_addresses(tmp_path):
    settings = Settings.from_env({"INSTANCE_PATH": str(tmp_path)})
    assert settings.STRIPE_API_BASE == "https://api.stripe.com"
    assert settings.STRIPE_JS_URL == "https://js.stripe.com/v3/"
