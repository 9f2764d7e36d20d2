"""The fake Twilio account and the portal's public address the message tests use."""
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-twilio-auth-token"
FROM_NUMBER = "+15005550006"
PUBLIC_BASE_URL = "https://portal.clinic.example"
