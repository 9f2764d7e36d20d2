"""Codes: ICD-10-CM diagnosis search (in process), the shipped billing codes, and the import of a
licensed clinic's code file (``flask codes import``)."""
from __future__ import annotations

import logging
import time

from sqlalchemy import select

from app.models import AuditEvent, BillingCode
from app.services import codes
from app.services.audit import Actor


# -- diagnoses -----------------------------------------------------------------------------------

def test_diagnosis_search_by_code_prefix_answers_billable_codes():
    found = codes.search_diagnoses("E11.6")
    assert found and all(d.code.startswith("E11.6") for d in found)
    assert "E11.6" not in [d.code for d in found]             # a category heading is not billable
    assert codes.search_diagnoses("e119")[0].code == "E11.9"  # no dot, lower case
    assert codes.search_diagnoses("E11.9")[0].description == "Type 2 diabetes mellitus without complications"


def test_diagnosis_search_by_words_matches_every_word_prefix():
    found = codes.search_diagnoses("type 2 diab without compl", limit=5)
    assert "E11.9" in [d.code for d in found]
    assert all("type 2 diab" in d.description.lower() for d in found)
    hypertension = codes.search_diagnoses("essential hypertension")
    assert hypertension[0].code == "I10"                      # the short, general description first
    assert codes.search_diagnoses("zzzz qqqq") == []
    assert codes.search_diagnoses("") == [] and codes.search_diagnoses("   ") == []


def test_diagnosis_search_is_fast_enough_for_a_type_ahead():
    codes.search_diagnoses("warmup")                          # builds the index once per process
    started = time.perf_counter()
    for query in ("fracture of radius", "J45", "anxiety", "a", "pain"):
        assert len(codes.search_diagnoses(query, limit=20)) <= 20
    assert (time.perf_counter() - started) / 5 < 0.05


def test_diagnosis_lookup_by_code():
    assert codes.diagnosis("i10").code == "I10"
    assert codes.diagnosis("E11") is None                     # a category: not billable
    assert codes.diagnosis("NOPE") is None


# -- shipped codes ---------------------------------------------------------------------------------

def test_shipped_codes_are_hcpcs_and_local_never_cpt(db):
    assert codes.seed_shipped(db, Actor.system("test")) == len(codes.HCPCS_SHIPPED) + len(codes.LOCAL_DEMO)
    assert codes.seed_shipped(db, Actor.system("test")) == 0  # a second run adds nothing
    db.commit()
    systems = {row.system for row in db.scalars(select(BillingCode))}
    assert systems == {"HCPCS", "LOCAL"}
    g0438 = codes.find(db, "G0438")
    assert [(c.system, c.descriptor[:21]) for c in g0438] == [("HCPCS", "Annual wellness visit")]
    assert [c.system for c in codes.find(db, "local:loc-consult")] == ["LOCAL"]


# -- the import command ----------------------------------------------------------------------------

def _import(app, tmp_path, text, *args):
    path = tmp_path / "codes.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return app.test_cli_runner().invoke(args=["codes", "import", str(path), *args])


def _codes(db):
    db.expire_all()
    return {(c.system, c.code): c.descriptor for c in db.scalars(select(BillingCode))}


def test_import_loads_a_cpt_file_and_upserts(app, db, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    first = _import(app, tmp_path, "code,descriptor\n10001,First licensed descriptor\n10002,Second one\n",
                    "--system", "CPT")
    assert first.exit_code == 0, first.output
    assert "Imported 2 codes (CPT 2): 2 added, 0 updated, 0 unchanged." in first.output
    assert _codes(db) == {("CPT", "10001"): "First licensed descriptor", ("CPT", "10002"): "Second one"}

    again = _import(app, tmp_path, "code,descriptor\n10001,First licensed descriptor (revised)\n"
                                   "10002,Second one\n10003,Third\n", "--system", "cpt")
    assert again.exit_code == 0, again.output
    assert "Imported 3 codes (CPT 3): 1 added, 1 updated, 1 unchanged." in again.output
    assert _codes(db)[("CPT", "10001")] == "First licensed descriptor (revised)"
    assert len(_codes(db)) == 3
    # CPT descriptors are the AMA's: never printed, logged or audited.
    assert "licensed descriptor" not in first.output + again.output + caplog.text
    events = db.scalars(select(AuditEvent).where(AuditEvent.action == "billing_codes.imported")).all()
    assert len(events) == 2 and "descriptor" not in str([e.details for e in events])
    assert events[1].details["added"] == 1 and events[1].details["systems"] == {"CPT": 3}


def test_import_takes_the_system_from_a_column(app, db, tmp_path):
    result = _import(app, tmp_path, "system,code,descriptor\nHCPCS,G0008,Administration of influenza virus vaccine\n"
                                    "LOCAL,LOC-X,Something local\n")
    assert result.exit_code == 0, result.output
    assert set(_codes(db)) == {("HCPCS", "G0008"), ("LOCAL", "LOC-X")}


def test_a_malformed_file_changes_nothing(app, db, tmp_path):
    assert _import(app, tmp_path, "code,descriptor\n10001,Kept as it was\n", "--system", "CPT").exit_code == 0
    before = _codes(db)
    bad = _import(app, tmp_path, "code,descriptor\n10001,Would change\n10002,Fine\nbad code!,Nope\n"
                                 "10004,\n10002,Duplicate\n10005,a,b\n", "--system", "CPT")
    assert bad.exit_code == 1
    assert "Nothing was imported" in bad.output
    for line in ("line 4: the code is not", "line 5 (10004): the descriptor is empty",
                 "line 6: CPT 10002 is also on line 3", "line 7: expected 2 columns, found 3"):
        assert line in bad.output, bad.output
    assert "Would change" not in bad.output and "Duplicate" not in bad.output
    assert _codes(db) == before


def test_import_refuses_files_it_cannot_read(app, db, tmp_path):
    cases = [
        ("code,descriptor\n10001,x\n", [], "--system CPT"),                        # no system
        ("cpt,description\n10001,x\n", ["--system", "CPT"], "The first line must name the columns"),
        (b"code,descriptor\n10001,\xff\xfe\n", ["--system", "CPT"], "not UTF-8"),
        ("code,descriptor\n", ["--system", "CPT"], "The file has no codes"),
        ("system,code,descriptor\nAMA,10001,x\n", [], "system must be one of HCPCS, LOCAL, CPT"),
    ]
    for text, args, message in cases:
        result = _import(app, tmp_path, text, *args)
        assert result.exit_code != 0 and message in result.output, (message, result.output)
    assert _codes(db) == {}
