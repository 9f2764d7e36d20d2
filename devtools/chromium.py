"""Make sure a Chromium exists for the e2e tests.

Debian's ``chromium`` package where apt is available (Playwright's browser
download does not work on every machine); Playwright's own download
elsewhere. Prints the path it found or installed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys


def find() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")


def main() -> int:
    path = find()
    if path:
        print(f"chromium: {path}")
        return 0
    if shutil.which("apt-get"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    else:
        subprocess.run([sys.executable, "-m", "playwright", "install", "chromium"], check=True)
        print("chromium: Playwright's own build")
        return 0
    path = find()
    if not path:
        print("chromium: could not be installed", file=sys.stderr)
        return 1
    print(f"chromium: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
