"""The per-area route tables that tests/foundation/test_access.py joins into one."""
