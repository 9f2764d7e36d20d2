import logging

from app.logging_filters import RedactTokens, redact


def test_tokens_in_paths_never_reach_the_request_log():
    line = '127.0.0.1 - - "GET /r/eyJhbGciOi.abc-DEF_123 HTTP/1.1" 200 -'
    assert redact(line) == '127.0.0.1 - - "GET /r/[redacted] HTTP/1.1" 200 -'
    assert redact("POST /password/reset/Zm9v.bar HTTP/1.1") == "POST /password/reset/[redacted] HTTP/1.1"
    assert redact("GET /visits/room/s3cr3t-room HTTP/1.1") == "GET /visits/room/[redacted] HTTP/1.1"
    assert redact("GET /book/providers/3 HTTP/1.1") == "GET /book/providers/3 HTTP/1.1"


def test_the_filter_rewrites_werkzeug_style_records():
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '%s - - [%s] "%s" %s -',
                               ("127.0.0.1", "now", "GET /r/tok.en HTTP/1.1", "200"), None)
    RedactTokens().filter(record)
    assert "tok.en" not in record.getMessage() and "/r/[redacted]" in record.getMessage()
