from app.blueprints.twilio.views import bp

__all__ = ["bp"]
