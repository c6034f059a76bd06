"""Debian's chromium for the tests that look at pages: where it is, the flags every test
starts it with (no network of its own, no profile of the user's), and a playwright browser on
it (playwright's own browser downloads are never used)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NEEDS_CHROMIUM = "needs chromium: apt-get install -y chromium (.ci/run installs it)"


def flags(profile: Path) -> list[str]:
    """Headless, sandbox off (root in CI), no GPU, and nothing that calls out on its own."""
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]


def launch(playwright: Any, profile: Path) -> Any:
    """A playwright browser on Debian's chromium. playwright keeps its own profile per
    context, so `profile` only holds what chromium itself writes."""
    assert CHROMIUM is not None, NEEDS_CHROMIUM
    args = [f for f in flags(profile) if not f.startswith("--user-data-dir")]
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
