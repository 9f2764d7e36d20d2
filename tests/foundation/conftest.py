"""Some foundation tests build an app of their own in-process (tests/foundation/test_settings.py:
create_app with production settings). create_app binds process-wide singletons, the rate
limiter's storage and the audit HMAC key, to the app it builds; put back what the suite's app
had, so the tests after these (in this folder and the next) still reach this run's Redis."""
import copy

import pytest


@pytest.fixture(autouse=True)
def _process_wide_app_state_restored():
    from app.extensions import limiter
    from app.services import audit

    kept_limiter = {name: copy.copy(value) if isinstance(value, (dict, list)) else value
                    for name, value in vars(limiter).items()}
    kept_key = audit._process_key
    yield
    vars(limiter).clear()
    vars(limiter).update(kept_limiter)
    audit._process_key = kept_key
