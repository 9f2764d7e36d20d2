"""Helpers shared by test modules (test modules never import each other): web (sign in, CSRF),
payments, hybrid (the hybrid deposit's checkout steps), concurrency (steps at the same moment), refunds,
twindow, messages, phone (browser steps), access_tables; fixtures used by
several folders are in the fixtures_*.py plugins, registered in tests/conftest.py."""
