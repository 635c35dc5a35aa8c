"""Emergency stop and resume: stop spend in seconds, restore exactly what ran.

The stop runs in the web request and never waits on the task queue (the queue may be what
is broken):
 1. the halt is recorded and committed first — from then on module jobs and Meta writes
    outside this module refuse to act; a press while another stop is still running joins it
    (recorded, answered at once) instead of sweeping Meta again;
 2. the modules' periodic tasks are disabled, remembering which were enabled;
 3. ACTIVE campaigns are listed from Meta (the source of truth), one CampaignHold is written
    per campaign BEFORE it is paused, then they are paused in batches, accounts in parallel,
    within the client's rate-limit budget;
 4. admins are alerted.
What is not confirmed paused within the deadline stays `pending` in the ledger; a Celery task
keeps sweeping until it is done. If the process doing any of this dies (a web worker killed
mid-request, a Celery worker killed mid-sweep, the queue down), the watchdog and the health
cycle finish the halt: every sweep covers the halt's whole scope and is idempotent, and a
campaign Meta no longer lists as ACTIVE is read, not paused again.

Only campaigns a person left running are held: Meta's listing filter is by effective status,
and a campaign configured PAUSED can read IN_PROCESS or WITH_ISSUES, so the listing is then
filtered on the configured status (rules.is_running). Resume re-activates a hold only if it was
configured ACTIVE before the stop and is still exactly as our pause left it (updated_time, and
the name and budgets that Meta does not stamp in updated_time). What resume cannot re-activate
within its deadline stays `resuming` and is worked on in the background, like the stop's pending
ones, until done or given up with an alert.

No exception escapes a stop or a resume: an unexpected failure on one account becomes that
account's error, the stop still alerts and hands the rest to the background sweep.

Threads only talk to Meta; every database write happens in the calling thread.

Where it lives: `stop` (the stop, its dry run, the sweeps), `resume` (resume, its dry run, the
two-person rule, the background re-activation), `ledger` (the CampaignHold ledger and the kill
switch's lock); the Meta fan-out they share is `controltower.fanout`. This package exposes the
use cases and their request and result types (a dry run is a request with `dry_run`).
"""

from __future__ import annotations

from typing import Any

from controltower import account_groups
from controltower.killswitch import ledger, stop
from controltower.killswitch.resume import (
    KillSwitchError,
    Lifted,
    ResumeRequest,
    ResumeResult,
    finish_resume,
    reactivate_group,
    report_resume,
    resume,
)
from controltower.killswitch.stop import (
    StopRequest,
    StopResult,
    emergency_stop,
    resweep,
    stop_for_requested_spikes,
    sweep_needed,
)
from controltower.locks import is_held
from controltower.models import AccountGroup, RunType, TowerState

__all__ = [
    "KillSwitchError",
    "Lifted",
    "ResumeRequest",
    "ResumeResult",
    "StopRequest",
    "StopResult",
    "emergency_stop",
    "finish_abandoned",
    "finish_resume",
    "report_resume",
    "resume",
    "resweep",
    "stop_for_requested_spikes",
    "sweep_needed",
    "work_group",
]


def finish_abandoned() -> None:
    """The watchdog's and the cycle's part: finish a halt nobody is finishing, close stop runs
    whose process died before they ended, and say so; carry on re-activations a resume left."""
    if sweep_needed():
        resweep(str(TowerState.get().halt_run_id), attempt=0, follow_up=False)
    stop.close_interrupted_stops()
    if not is_held(ledger.KILL_SWITCH_LOCK):
        for run_id in ledger.resumes_left_pending():
            finish_resume(str(run_id), attempt=0, follow_up=False)


def work_group(group_id: str) -> dict[str, Any]:
    """A worker's share of a stop or a resume: its account group, unless another process took it."""
    group = AccountGroup.objects.select_related("run").filter(pk=group_id).first()
    if group is None or not group.take(account_groups.taker("worker")):
        return {"done": True, "reason": "taken by another process, or gone"}
    if group.run.run_type == RunType.RESUME:
        return reactivate_group(group)
    return stop.sweep_group(group)
