"""Give back the CPUs/GPUs of trials that Tune stops early.

A trial's Ray Train run reserves its workers with a placement group created by the Train controller, an actor
owned by the trial. When ASHA stops the trial the controller dies with it, but a placement group lives as long as
its job (the search driver) unless Ray Train's own cleaner removes it, and that cleaner needs the dashboard's state
API. Without it the stopped trials' workers' resources stay reserved and later trials wait forever. This Tune
callback (driver side) removes this job's placement groups whose creating actor is dead.
"""
from __future__ import annotations

import time

from ray.tune import Callback


def release_orphaned_placement_groups() -> int:
    """Remove the current job's non-detached placement groups whose creator actor has died; returns how many."""
    import ray
    from ray._private.state import state
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    job = ray.get_runtime_context().get_job_id()
    removed = 0
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        pg = gcs_pb2.PlacementGroupTableData.FromString(raw)
        if (pg.state == gcs_pb2.PlacementGroupTableData.REMOVED or pg.is_detached or not pg.creator_actor_dead
                or pg.creator_job_id.hex() != job):
            continue
        if not pg.creator_actor_id or ray.ActorID(pg.creator_actor_id).is_nil():
            continue  # created by the driver itself (Tune's trial reservations): "creator actor dead" from birth
        try:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(pg.placement_group_id)))
            removed += 1
        except Exception:  # already gone
            pass
    return removed


class ReleaseStoppedTrialResources(Callback):
    """Every few seconds (and when a trial ends) remove placement groups orphaned by stopped trials."""

    def __init__(self, every_s: float = 5.0):
        self.every_s = every_s
        self._last = 0.0

    def __getstate__(self):
        return {"every_s": self.every_s, "_last": 0.0}

    def _sweep(self, force=False):
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            try:
                n = release_orphaned_placement_groups()
            except Exception as e:  # never take the search down
                print(f"[search] warning: could not check for orphaned placement groups ({e})", flush=True)
                return
            if n:
                print(f"[search] released the workers' resources of {n} stopped trial run(s)", flush=True)

    def on_step_begin(self, iteration, trials, **info):
        self._sweep()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._last = 0.0  # sweep at the next step: the trial's actor is being torn down now
