"""The simulated payers: demo data, the 270 -> 271 answer and the 837P -> 835 adjudication.

Pure functions over plain dicts (the server stores them); all money in integer cents.
"""
from __future__ import annotations

import re
import secrets
from datetime import date, datetime, timezone

CODE_SYSTEMS = ("CPT", "HCPCS", "LOCAL")
SCENARIOS = (None, "deny_co50", "deny_co197", "deny_pr204")
MEMBER_ID = re.compile(r"^[A-Za-z0-9-]{3,30}$")

# AAA reject reasons of the 271 (X12 005010X279A1, AAA03) the simulator gives.
AAA = {
    "71": "Patient Birth Date Does Not Match That for the Patient on the Database",
    "72": "Invalid/Missing Subscriber/Insured ID",
    "75": "Subscriber/Insured Not Found",
}
# CARC (Claim Adjustment Reason Codes) the simulator uses.
CARC = {
    "1": "Deductible amount",
    "2": "Coinsurance amount",
    "3": "Co-payment amount",
    "27": "Expenses incurred after coverage terminated",
    "31": "Patient cannot be identified as our insured",
    "45": "Charge exceeds fee schedule/maximum allowable or contracted/legislated fee arrangement",
    "50": "These are non-covered services because this is not deemed a 'medical necessity' by the payer",
    "197": "Precertification/notification/authorization/pre-treatment absent",
    "204": "This service/equipment/drug is not covered under the patient's current benefit plan",
}
DENIALS = {"deny_co50": ("CO", "50"), "deny_co197": ("CO", "197"), "deny_pr204": ("PR", "204")}

PLAN_FIELDS = ("copay_cents", "coinsurance_percent", "deductible_cents", "oop_max_cents",
               "not_covered", "auth_required")


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id(prefix: str, n: int = 12) -> str:
    return prefix + secrets.token_hex(n // 2 + n % 2)[:n]


# -- demo data ----------------------------------------------------------------------------------

DEMO_PAYERS = [
    {"id": "AETNA-DEMO", "name": "Aetna (simulated)", "default_allowed_percent": 60,
     "fee_schedule": {"CPT:99202": 7500, "CPT:99203": 11000, "CPT:99204": 16500,
                      "CPT:99212": 6000, "CPT:99213": 9500, "CPT:99214": 13500, "CPT:99215": 18500,
                      "CPT:90834": 11500, "CPT:90837": 15000, "HCPCS:G2012": 1400, "CPT:36415": 300}},
    {"id": "BCBS-DEMO", "name": "Blue Cross Blue Shield (simulated)", "default_allowed_percent": 55,
     "fee_schedule": {"CPT:99203": 10500, "CPT:99204": 15500, "CPT:99212": 5500, "CPT:99213": 9000,
                      "CPT:99214": 12500, "CPT:90834": 10500, "CPT:36415": 250}},
    {"id": "MEDICAID-DEMO", "name": "State Medicaid (simulated)", "default_allowed_percent": 40,
     "fee_schedule": {"CPT:99203": 7000, "CPT:99213": 5500, "CPT:99214": 8000, "CPT:90834": 7500,
                      "CPT:36415": 200}},
]
DEMO_PLANS = [
    {"id": "AETNA-PPO", "payer_id": "AETNA-DEMO", "name": "Aetna Open Access PPO (demo)", "group_number": "AET-0001",
     "copay_cents": 2500, "coinsurance_percent": 20, "deductible_cents": 50000, "oop_max_cents": 300000,
     "not_covered": [], "auth_required": []},
    {"id": "AETNA-HDHP", "payer_id": "AETNA-DEMO", "name": "Aetna HSA HDHP (demo)", "group_number": "AET-0002",
     "copay_cents": 0, "coinsurance_percent": 20, "deductible_cents": 300000, "oop_max_cents": 700000,
     "not_covered": [], "auth_required": []},
    {"id": "BCBS-PPO", "payer_id": "BCBS-DEMO", "name": "Blue Cross PPO (demo)", "group_number": "BC-1000",
     "copay_cents": 3000, "coinsurance_percent": 10, "deductible_cents": 100000, "oop_max_cents": 400000,
     "not_covered": ["HCPCS:G2012"], "auth_required": []},
    {"id": "MEDICAID-STD", "payer_id": "MEDICAID-DEMO", "name": "Medicaid Standard (demo)", "group_number": None,
     "copay_cents": 300, "coinsurance_percent": 0, "deductible_cents": 0, "oop_max_cents": 10000,
     "not_covered": [], "auth_required": []},
]


def _m(payer_id, member_id, plan_id, note, **kw):
    member = {"payer_id": payer_id, "member_id": member_id, "plan_id": plan_id, "active": True,
              "coverage_start": "2020-01-01", "coverage_end": None, "deductible_met_cents": 0,
              "oop_met_cents": 0, "scenario": None, "plan_overrides": {}, "adjudication_overrides": {},
              "birth_date": None, "note": note}
    member.update(kw)
    return member


DEMO_MEMBERS = [
    _m("AETNA-DEMO", "W100000001", "AETNA-PPO", "active; deductible partly met (200.00 of 500.00)",
       deductible_met_cents=20000, oop_met_cents=40000),
    _m("AETNA-DEMO", "W100000002", "AETNA-HDHP", "active HDHP; nothing met"),
    _m("AETNA-DEMO", "W100000003", "AETNA-PPO", "active; deductible met",
       deductible_met_cents=50000, oop_met_cents=100000),
    _m("AETNA-DEMO", "W100000004", "AETNA-PPO", "active; 50.00 short of the out-of-pocket maximum",
       deductible_met_cents=50000, oop_met_cents=295000),
    _m("AETNA-DEMO", "W100000009", "AETNA-PPO", "coverage terminated 2025-12-31",
       active=False, coverage_end="2025-12-31"),
    _m("AETNA-DEMO", "W100000050", "AETNA-PPO", "every claim denied CO-50 (not medically necessary)",
       scenario="deny_co50"),
    _m("AETNA-DEMO", "W100000197", "AETNA-PPO", "every claim denied CO-197 (authorization absent)",
       scenario="deny_co197"),
    _m("AETNA-DEMO", "W100000204", "AETNA-PPO", "every claim denied PR-204 (not covered: the patient owes it)",
       scenario="deny_pr204"),
    _m("AETNA-DEMO", "W100000777", "AETNA-PPO",
       "deductible met; the 271 says 20% coinsurance, claims adjudicate at 0%: the payer pays more than estimated",
       deductible_met_cents=50000, oop_met_cents=50000, adjudication_overrides={"coinsurance_percent": 0}),
    _m("AETNA-DEMO", "W100000666", "AETNA-PPO",
       "deductible met; the 271 says 20% coinsurance, claims adjudicate at 40%: the payer pays less than estimated",
       deductible_met_cents=50000, oop_met_cents=50000, adjudication_overrides={"coinsurance_percent": 40}),
    _m("BCBS-DEMO", "XYZ200000001", "BCBS-PPO", "active; nothing met; virtual check-ins (G2012) not covered"),
    _m("BCBS-DEMO", "XYZ200000009", "BCBS-PPO", "inactive", active=False, coverage_end="2024-06-30"),
    _m("MEDICAID-DEMO", "MCD300000001", "MEDICAID-STD", "active Medicaid; 3.00 copay"),
]


def seed(store) -> None:
    for p in DEMO_PAYERS:
        store.put("payer", p["id"], dict(p))
    for p in DEMO_PLANS:
        store.put("plan", p["id"], dict(p))
    for m in DEMO_MEMBERS:
        store.put("member", member_key(m["payer_id"], m["member_id"]), dict(m))


def member_key(payer_id: str, member_id: str) -> str:
    return f"{payer_id}/{member_id}"


def effective_plan(plan: dict, member: dict, *, adjudication: bool = False) -> dict:
    eff = {k: plan.get(k) for k in PLAN_FIELDS}
    eff["name"] = plan.get("name")
    eff["group_number"] = plan.get("group_number")
    eff.update(member.get("plan_overrides") or {})
    if adjudication:
        eff.update(member.get("adjudication_overrides") or {})
    eff["not_covered"] = list(eff.get("not_covered") or [])
    eff["auth_required"] = list(eff.get("auth_required") or [])
    return eff


def covered_on(member: dict, day: date) -> bool:
    if not member.get("active"):
        return False
    start, end = member.get("coverage_start"), member.get("coverage_end")
    if start and day < date.fromisoformat(start):
        return False
    if end and day > date.fromisoformat(end):
        return False
    return True


# -- 270 -> 271 -----------------------------------------------------------------------------------

def eligibility_response(req: dict, payer: dict, member: dict | None, plan: dict | None) -> dict:
    """The content of a 271 for a validated 270 (``req``: payer_id, member_id, service_date,
    service_type_codes, birth_date or None).  The subscriber's name and birth date are not in it."""
    out = {"id": new_id("elig_", 16), "object": "eligibility", "created": now_iso(),
           "payer": {"id": payer["id"], "name": payer["name"]}, "member_id": req["member_id"],
           "service_date": req["service_date"], "service_type_codes": req["service_type_codes"],
           "active": False, "coverage": None, "copay_cents": None, "coinsurance_percent": None,
           "deductible": None, "out_of_pocket": None, "benefits": [], "errors": []}
    if not MEMBER_ID.match(req["member_id"]):
        out["errors"].append(_aaa("72"))
        return out
    if member is None:
        out["errors"].append(_aaa("75"))
        return out
    if req.get("birth_date") and member.get("birth_date") and req["birth_date"] != member["birth_date"]:
        out["errors"].append(_aaa("71"))
        return out
    eff = effective_plan(plan, member)
    active = covered_on(member, date.fromisoformat(req["service_date"]))
    out["active"] = active
    out["coverage"] = {"status_code": "1" if active else "6", "status": "active" if active else "inactive",
                       "plan_id": plan["id"], "plan_name": eff["name"], "group_number": eff["group_number"],
                       "start": member.get("coverage_start"), "end": member.get("coverage_end")}
    if not active:
        out["benefits"].append({"eb01": "6", "info": "Inactive", "coverage_level": "IND",
                                "service_type_codes": req["service_type_codes"]})
        return out
    ded, ded_met = eff["deductible_cents"], min(member["deductible_met_cents"], eff["deductible_cents"])
    oop, oop_met = eff["oop_max_cents"], min(member["oop_met_cents"], eff["oop_max_cents"])
    out.update(
        copay_cents=eff["copay_cents"], coinsurance_percent=eff["coinsurance_percent"],
        deductible={"amount_cents": ded, "met_cents": ded_met, "remaining_cents": ded - ded_met},
        out_of_pocket={"amount_cents": oop, "met_cents": oop_met, "remaining_cents": oop - oop_met})
    stc = req["service_type_codes"]
    # EB loops as a 271 carries them (EB01 info code, EB06 time period: 23 calendar year, 29 remaining).
    out["benefits"] = [
        {"eb01": "1", "info": "Active Coverage", "coverage_level": "IND", "service_type_codes": stc,
         "plan_name": eff["name"]},
        {"eb01": "B", "info": "Co-Payment", "coverage_level": "IND", "service_type_codes": stc,
         "time_period": "27", "amount_cents": eff["copay_cents"], "in_network": True},
        {"eb01": "A", "info": "Co-Insurance", "coverage_level": "IND", "service_type_codes": stc,
         "time_period": "27", "percent": eff["coinsurance_percent"], "in_network": True},
        {"eb01": "C", "info": "Deductible", "coverage_level": "IND", "service_type_codes": stc,
         "time_period": "23", "amount_cents": ded, "in_network": True},
        {"eb01": "C", "info": "Deductible", "coverage_level": "IND", "service_type_codes": stc,
         "time_period": "29", "amount_cents": ded - ded_met, "in_network": True},
        {"eb01": "G", "info": "Out of Pocket (Stop Loss)", "coverage_level": "IND", "service_type_codes": stc,
         "time_period": "23", "amount_cents": oop, "in_network": True},
        {"eb01": "G", "info": "Out of Pocket (Stop Loss)", "coverage_level": "IND", "service_type_codes": stc,
         "time_period": "29", "amount_cents": oop - oop_met, "in_network": True},
    ]
    return out


def _aaa(code: str) -> dict:
    return {"code": code, "description": AAA[code], "followup_action": "C"}


# -- 837P -> 835 ----------------------------------------------------------------------------------

def code_key(line: dict) -> str:
    return f"{line['code_system']}:{line['code']}"


def allowed_cents(payer: dict, line: dict) -> int:
    """Fee schedule per unit (``SYSTEM:CODE:MODIFIER`` first, then ``SYSTEM:CODE``) times units, else
    the payer's default percentage of the billed amount; never more than billed."""
    schedule = payer.get("fee_schedule") or {}
    fee = None
    for mod in line.get("modifiers") or []:
        fee = schedule.get(f"{code_key(line)}:{mod}")
        if fee is not None:
            break
    if fee is None:
        fee = schedule.get(code_key(line))
    if fee is not None:
        allowed = int(fee) * int(line["units"])
    else:
        allowed = (line["billed_cents"] * int(payer.get("default_allowed_percent", 60)) + 50) // 100
    return max(0, min(line["billed_cents"], allowed))


def adjudicate(claim: dict, payer: dict, member: dict | None, plan: dict | None) -> tuple[dict, int, int]:
    """The 835 content for one claim, and the deductible and out-of-pocket amounts it applies to the
    member's accumulators.  Per line: billed = paid + sum(adjustments); allowed = paid + PR-1 + PR-2 + PR-3.

    Order per line: copay (PR-3, once per claim, on the first payable line), then what is left of
    the deductible (PR-1), then coinsurance on the rest (PR-2, rounded half up), then the out-of-pocket
    maximum caps the patient's share (coinsurance reduced first, then deductible, then copay)."""
    service_day = date.fromisoformat(claim["service_date"])
    eff = effective_plan(plan, member, adjudication=True) if member and plan else None
    if member is not None:
        ded_left = max(0, eff["deductible_cents"] - member["deductible_met_cents"])
        oop_left = max(0, eff["oop_max_cents"] - member["oop_met_cents"])
        copay_left = eff["copay_cents"]
    ded_applied = oop_applied = 0
    lines = []
    for number, line in enumerate(claim["lines"], start=1):
        billed = line["billed_cents"]
        adjustments: list[dict] = []
        allowed = paid = 0
        denial = None
        if member is None:
            denial = ("CO", "31")
        elif not covered_on(member, service_day):
            denial = ("PR", "27")
        elif member.get("scenario") in DENIALS:
            denial = DENIALS[member["scenario"]]
        elif code_key(line) in eff["not_covered"]:
            denial = ("PR", "204")
        elif code_key(line) in eff["auth_required"]:
            denial = ("CO", "197")
        if denial:
            adjustments.append(_adj(denial[0], denial[1], billed))
        else:
            allowed = allowed_cents(payer, line)
            rest = allowed
            pr3 = min(copay_left, rest)
            copay_left -= pr3
            rest -= pr3
            pr1 = min(ded_left, rest)
            rest -= pr1
            pr2 = (rest * int(eff["coinsurance_percent"]) + 50) // 100
            excess = pr1 + pr2 + pr3 - oop_left
            if excess > 0:
                for name in ("pr2", "pr1", "pr3"):
                    value = {"pr1": pr1, "pr2": pr2, "pr3": pr3}[name]
                    cut = min(value, excess)
                    excess -= cut
                    if name == "pr1":
                        pr1 -= cut
                    elif name == "pr2":
                        pr2 -= cut
                    else:
                        pr3 -= cut
            ded_left -= pr1
            oop_left -= pr1 + pr2 + pr3
            ded_applied += pr1
            oop_applied += pr1 + pr2 + pr3
            paid = allowed - pr1 - pr2 - pr3
            for group, code, amount in (("CO", "45", billed - allowed), ("PR", "1", pr1), ("PR", "2", pr2),
                                        ("PR", "3", pr3)):
                if amount:
                    adjustments.append(_adj(group, code, amount))
        assert billed == paid + sum(a["amount_cents"] for a in adjustments)
        lines.append({"line_number": number, "code_system": line["code_system"], "code": line["code"],
                      "modifiers": line["modifiers"], "units": line["units"], "billed_cents": billed,
                      "allowed_cents": allowed, "paid_cents": paid, "adjustments": adjustments})
    billed = sum(x["billed_cents"] for x in lines)
    paid = sum(x["paid_cents"] for x in lines)
    denied = all(x["allowed_cents"] == 0 for x in lines)
    patient = sum(a["amount_cents"] for x in lines for a in x["adjustments"] if a["group"] == "PR")
    remittance = {
        "id": new_id("rem_", 16), "object": "remittance", "created": now_iso(),
        "claim_id": claim["claim_id"], "payer_claim_number": claim["payer_claim_number"],
        "payer": {"id": payer["id"], "name": payer["name"]}, "member_id": claim["member_id"],
        "service_date": claim["service_date"],
        "claim_status_code": "4" if denied else "1",      # CLP02: 1 processed as primary, 4 denied
        "status": "denied" if denied else "processed",
        "billed_cents": billed, "allowed_cents": sum(x["allowed_cents"] for x in lines), "paid_cents": paid,
        "patient_responsibility_cents": patient,          # CLP05
        "lines": lines,
        "payment": {"method": "ACH" if paid else "NON", "trace_number": "TRN" + secrets.token_hex(5).upper(),
                    "amount_cents": paid, "date": now_iso()[:10]},
    }
    return remittance, ded_applied, oop_applied


def _adj(group: str, code: str, amount: int) -> dict:
    return {"group": group, "code": code, "amount_cents": amount, "description": CARC[code]}
