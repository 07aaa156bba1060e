"""Open the Dagster UI over a finished `make run` in headless Chromium and check what the team sees.

Starts the webserver on the project's workspace and instance (DAGSTER_HOME, default
dagster_home/), opens the asset lineage, the recommendations asset, the metrics asset and the
runs list, saves a screenshot of each, and fails when:

- a preview shows ids in float notation (``9.73905e+08``) instead of integers;
- a metadata table is not rendered inline (hidden behind "Show Markdown");
- a run belongs to no named job (``__ephemeral_asset_job__``, ``__ASSET_JOB``).

Needs Debian's Chromium and Playwright (no browser download: it drives /usr/bin/chromium):

    apt-get install -y chromium && .venv/bin/pip install -e '.[ui]'
    make run && .venv/bin/python benchmarks/ui_check.py --out ui_screenshots
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
STAGE_JOBS = ("ingest_and_features", "train_and_evaluate", "serve_shards", "marts")
FLOAT_ID = re.compile(r"\b\d\.\d+e\+\d+\b")
# Chromium on a closed network: no background connections, a throwaway profile.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


@contextmanager
def webserver(port: int, home: Path):
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    command = [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited: {process.stderr.read()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            raise RuntimeError("dagster-webserver did not answer within 3 minutes")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def open_page(page, url: str, ready_text: str, shot: Path) -> str:
    """Go to ``url``, wait until ``ready_text`` shows, screenshot the page; returns the visible text."""
    page.goto(url)
    page.get_by_text(ready_text, exact=False).first.wait_for(timeout=60_000)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(shot), full_page=True)
    return page.inner_text("body")


def check_pages(base: str, out: Path, chromium: str) -> list[str]:
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})

        open_page(page, f"{base}/asset-groups", "user_recommendations", out / "lineage.png")

        text = open_page(page, f"{base}/assets/serving/user_recommendations", "preview", out / "recommendations.png")
        if FLOAT_ID.search(text):
            problems.append(f"recommendations: ids in float notation ({FLOAT_ID.search(text).group()})")
        if not re.search(r"\b\d{6,}\b", text):
            problems.append("recommendations: no integer item id visible in the preview")

        text = open_page(page, f"{base}/assets/evaluation/recommendation_metrics", "metrics@10", out / "metrics.png")
        if "Show Markdown" in text:
            problems.append("metrics: a metadata entry is markdown behind 'Show Markdown'")
        if "hit_rate" not in text:
            problems.append("metrics: the metric table is not rendered inline (no hit_rate row visible)")

        text = open_page(page, f"{base}/runs", "ingest_and_features", out / "runs.png")
        missing = [job for job in STAGE_JOBS if job not in text]
        if missing:
            problems.append(f"runs: no run of {', '.join(missing)} listed")
        if "__ephemeral_asset_job__" in text or "__ASSET_JOB" in text:
            problems.append("runs: a run without a job name")
        browser.close()
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=PROJECT / "ui_screenshots", help="folder for the screenshots")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("DAGSTER_HOME", PROJECT / "dagster_home")),
                        help="the Dagster instance of the finished run (default: DAGSTER_HOME or dagster_home/)")  # fmt: skip
    parser.add_argument("--port", type=int, default=3999)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        sys.exit(f"No Chromium at {args.chromium}: apt-get install -y chromium (or pass --chromium PATH).")
    args.out.mkdir(parents=True, exist_ok=True)
    with webserver(args.port, args.home.resolve()) as base:
        problems = check_pages(base, args.out, args.chromium)
    print(f"Screenshots in {args.out}: lineage.png, recommendations.png, metrics.png, runs.png")
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        sys.exit(1)
    print("OK: integer ids in the previews, metadata tables inline, every run named by its job")


if __name__ == "__main__":
    main()
