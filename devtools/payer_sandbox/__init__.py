"""A local payer simulator standing in for a clearinghouse (X12 270/271 eligibility, 837P claims,
835 remittances, as JSON).  Development and tests only; see README.md."""

from .process import PayerSandboxProcess

__all__ = ["PayerSandboxProcess"]
