"""Plain error pages: never a stack trace."""
from flask import Flask
from flask_wtf.csrf import CSRFError

from app.extensions import db
from app.web import render

MESSAGES = {
    400: ("Something was wrong with that request", "Go back, check the form and try again."),
    403: ("You can't open this page", "Your account does not have access to it."),
    404: ("Page not found", "The page you asked for does not exist or is not yours."),
    405: ("Not allowed", "That action is not available here."),
    429: ("Too many attempts", "Please wait a minute and try again."),
    500: ("Something went wrong on our side", "Nothing was lost. Please try again in a moment; "
          "if it keeps happening, call the clinic."),
}


def _page(code: int, detail: str | None = None):
    title, message = MESSAGES[code]
    return render("errors/error.html", status=code, code=code, title=title,
                  message=detail or message)


def register(app: Flask) -> None:
    for code in (400, 403, 404, 405, 429):
        app.register_error_handler(code, lambda error, code=code: _page(code))

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return _page(400, "Your form expired or was sent from elsewhere. Reload the page and try again.")

    @app.errorhandler(500)
    def server_error(error):
        db.session.rollback()
        return _page(500)
