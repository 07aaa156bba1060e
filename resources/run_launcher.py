"""The embedded instance's run launcher: the default one, plus a health check for run monitoring.

Dagster's DefaultRunLauncher cannot tell the monitoring daemon whether a run's process is
alive, so a run killed with ``kill -9`` (or a ``recsys run`` whose terminal closed) would stay
STARTED forever, its retry policy would never fire and any pool slot it held would stay taken.
Every run records the process that started it (the ``pid`` of its RUN_START event): the code
server's run worker for runs launched from the UI, sensors and retries, the ``recsys`` process
for in-process runs. This launcher reports FAILED once that process is gone, and the daemon
(``run_monitoring`` in dagster_home/dagster.yaml) then marks the run failed.

The embedded instance lives on one machine (SQLite under DAGSTER_HOME), so a pid names a
process of this machine. Production runs are Kubernetes Jobs, checked by the K8sRunLauncher.
"""

from __future__ import annotations

import psutil
from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

# A pid is reused only by a process started later; allow for the clocks' rounding.
START_TOLERANCE_SECONDS = 2.0


def process_alive_since(pid: int, started_by: float) -> bool:
    """Whether process ``pid`` exists, is not a zombie, and was started by ``started_by`` (not a reused pid)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= started_by + START_TOLERANCE_SECONDS
    except psutil.NoSuchProcess:
        return False


class LocalRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        starts = self._instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_START)
        if not starts or starts[-1].dagster_event is None or starts[-1].dagster_event.pid is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker recorded yet")
        start = starts[-1]
        pid = start.dagster_event.pid
        if process_alive_since(pid, start.timestamp):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker pid {pid} is alive")
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run's process (pid {pid}) is gone: killed or crashed")
