from app.blueprints.account.views import bp
from app.blueprints.account import cards  # noqa: F401,E402  (registers /account/cards on bp)
from app.blueprints.account import language  # noqa: F401,E402  (registers /language, /account/language)

__all__ = ["bp"]
