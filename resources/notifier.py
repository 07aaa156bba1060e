"""Where alerts go: freshness failures, failed asset checks and failed runs (recsys_assets/sensors.py).

Every alert is appended as one JSON line to a file (default ``$RECSYS_HOME/alerts.log``), the
record an operator can grep on any machine. When ``RECSYS_ALERT_WEBHOOK`` is set, it is also
POSTed there as JSON with a ``text`` field, the shape Slack, Mattermost and Teams incoming
webhooks accept. Swap the resource for another channel (e-mail, PagerDuty) without touching
the sensors.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from resources import settings

WEBHOOK_ENV = "RECSYS_ALERT_WEBHOOK"


@dataclass(frozen=True)
class Alert:
    kind: str  # freshness | asset_check | run_failure
    severity: str  # error | warning
    subject: str  # the asset, check or run the alert is about
    message: str
    details: dict = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def text(self) -> str:
        return f"[recsys {self.severity}] {self.kind} {self.subject}: {self.message}"


class Notifier(dg.ConfigurableResource):
    """Appends alerts to ``path`` and, when ``webhook_url`` is set, POSTs them there."""

    path: str = ""
    """Alert log file; default ``$RECSYS_HOME/alerts.log``."""
    webhook_url: str = ""
    """Incoming-webhook URL; empty: file only."""
    timeout_seconds: float = 10.0

    @property
    def log_file(self) -> Path:
        return Path(self.path) if self.path else settings.recsys_home() / "alerts.log"

    def send(self, alert: Alert) -> None:
        """Deliver one alert. A webhook that fails raises, so the sensor retries on its next tick."""
        line = json.dumps({**asdict(alert), "text": alert.text}, default=str)
        # Webhook first: if it fails nothing is recorded, and the retry does not log twice.
        if self.webhook_url:
            request = urllib.request.Request(
                self.webhook_url, data=line.encode(), headers={"Content-Type": "application/json"}, method="POST"
            )
            with urllib.request.urlopen(request, timeout=self.timeout_seconds):
                pass
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("a") as log:
            log.write(line + "\n")


def notifier_resource() -> Notifier:
    """The notifier of the environment: ``$RECSYS_HOME/alerts.log``, plus ``RECSYS_ALERT_WEBHOOK`` if set."""
    # Through dg.EnvVar, so the UI shows the variable's name, never the secret URL.
    webhook = dg.EnvVar(WEBHOOK_ENV) if settings.alert_webhook() else ""
    return Notifier(path=str(settings.recsys_home() / "alerts.log"), webhook_url=webhook)
