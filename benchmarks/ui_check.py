"""Open the Dagster UI over a finished `make run` in headless Chromium and check what the team sees.

Starts the webserver on the project's workspace and instance (DAGSTER_HOME, default
dagster_home/), opens the asset lineage, the recommendations asset, the metrics asset and the
runs list and the Overview timeline, saves a screenshot of each, and fails when:

- a preview shows ids in float notation (``9.73905e+08``) instead of integers;
- a metadata table is not rendered inline (hidden behind "Show Markdown": only plots may be,
  Dagster shows images through markdown), or the comparison plot is wider than its dialog;
- a run belongs to no named job (``__ephemeral_asset_job__``, ``__ASSET_JOB``), or the stage
  jobs' runs are missing from the Overview timeline.

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
PLOTS = {"comparison_plot", "loss_curve"}  # the markdown entries that are pictures
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
    dismiss_welcome(page)
    page.screenshot(path=str(shot), full_page=True)
    return page.inner_text("body")


def dismiss_welcome(page) -> None:
    """The first visit's "Join the Dagster community" dialog, which may open a moment after the page."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=3_000)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError: no dialog this time
        return
    skip.click()
    skip.wait_for(state="hidden", timeout=10_000)


def markdown_entries(text: str) -> set[str]:
    """Metadata keys whose value is behind a "Show Markdown" button (the key line sits above its value)."""
    keys = set()
    for match in re.finditer("Show Markdown", text):
        lines = [line.strip() for line in text[: match.start()].splitlines() if line.strip()]
        keys.add(lines[-3] if len(lines) >= 3 else "?")  # [..., key, timestamp, "["]
    return keys


def plot_fits_its_dialog(page, shot: Path) -> list[str]:
    page.get_by_text("Show Markdown").first.click()
    image = page.locator("[role=dialog] img").first
    image.wait_for(timeout=30_000)
    page.wait_for_timeout(1_000)  # the dialog fades in
    page.screenshot(path=str(shot))
    picture, dialog = image.bounding_box(), page.locator("[role=dialog]").first.bounding_box()
    natural = image.evaluate("img => img.naturalWidth")
    page.keyboard.press("Escape")
    if natural > dialog["width"] or picture["x"] + picture["width"] > dialog["x"] + dialog["width"] + 1:
        return [f"metrics: the comparison plot ({natural} px) is wider than its dialog ({dialog['width']:.0f} px)"]
    return []


def check_pages(base: str, out: Path, chromium: str) -> list[str]:
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})

        open_page(page, f"{base}/asset-groups", "Global asset lineage", out / "lineage.png")

        text = open_page(page, f"{base}/assets/serving/user_recommendations", "preview", out / "recommendations.png")
        if FLOAT_ID.search(text):
            problems.append(f"recommendations: ids in float notation ({FLOAT_ID.search(text).group()})")
        if not re.search(r"\b\d{6,}\b", text):
            problems.append("recommendations: no integer item id visible in the preview")

        text = open_page(page, f"{base}/assets/evaluation/recommendation_metrics", "metrics@10", out / "metrics.png")
        hidden = markdown_entries(text) - PLOTS
        if hidden:
            problems.append(f"metrics: {', '.join(sorted(hidden))} behind 'Show Markdown' instead of inline")
        if "hit_rate" not in text:
            problems.append("metrics: the metric table is not rendered inline (no hit_rate row visible)")
        problems += plot_fits_its_dialog(page, out / "metrics_plot.png")

        text = open_page(page, f"{base}/runs", "ingest_and_features", out / "runs.png")
        missing = [job for job in STAGE_JOBS if job not in text]
        if missing:
            problems.append(f"runs: no run of {', '.join(missing)} listed")
        if "__ephemeral_asset_job__" in text or "__ASSET_JOB" in text:
            problems.append("runs: a run without a job name")

        # The timeline lists the runs of the code location's jobs (recsys run gives its runs that origin).
        text = open_page(page, f"{base}/overview/activity/timeline", "ingest_and_features", out / "timeline.png")
        missing = [job for job in STAGE_JOBS if job not in text]
        if missing:
            problems.append(f"timeline: no run of {', '.join(missing)} on the Overview timeline")
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
    print(f"Screenshots in {args.out}: lineage.png, recommendations.png, metrics.png, metrics_plot.png, runs.png, timeline.png")
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        sys.exit(1)
    print("OK: integer ids in the previews, metadata tables inline, the plot within its dialog, every run named by its job "
          "and on the timeline")  # fmt: skip


if __name__ == "__main__":
    main()
