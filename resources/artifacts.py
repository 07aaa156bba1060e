"""The artifact store: versioned files (datasets, tokenizers, models, engines) by path.

Locally a folder (``$RECSYS_HOME/artifacts``). In production the same path is a shared
volume mounted into the orchestrator and the GPU pods (see deploy/), so a GPU job reads
and writes exactly what the assets see.
"""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from resources import settings


class ArtifactStore(dg.ConfigurableResource):
    root: str = ""

    @property
    def base(self) -> Path:
        return Path(self.root) if self.root else settings.artifacts_dir()

    def path(self, *parts: str) -> Path:
        """A path inside the store; parent folders are created."""
        target = self.base.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def folder(self, *parts: str) -> Path:
        """A folder inside the store, created if missing."""
        target = self.base.joinpath(*parts)
        target.mkdir(parents=True, exist_ok=True)
        return target


@dataclass(frozen=True)
class Materialization:
    timestamp: float
    """When it was recorded (seconds since the epoch)."""
    metadata: dict
    """Its metadata as plain values."""


def latest_materialization(instance: dg.DagsterInstance, key: dg.AssetKey) -> Materialization | None:
    """The newest materialization of ``key``; None before the first."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return Materialization(event.timestamp, {name: value.value for name, value in event.asset_materialization.metadata.items()})


def latest_artifact(instance: dg.DagsterInstance, key: dg.AssetKey) -> Path:
    """The artifact path recorded by the newest materialization of ``key``."""
    latest = latest_materialization(instance, key)
    if latest is None or "path" not in latest.metadata:
        raise FileNotFoundError(f"{key.to_user_string()} has no materialization with an artifact path: materialize it first.")
    return Path(latest.metadata["path"])


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    """The newest materialization's metadata of ``key``, as plain values."""
    latest = latest_materialization(instance, key)
    if latest is None:
        raise FileNotFoundError(f"{key.to_user_string()} has not been materialized yet: materialize it first.")
    return latest.metadata
