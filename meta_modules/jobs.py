"""The 17 module jobs. Each is a Celery task registered under its registry name."""
from __future__ import annotations

from typing import Any

from meta_modules.models import ModuleRun
from meta_modules.registry import MODULES
from meta_modules.runs import RunContext, module_job


def _count_own_runs(run: RunContext) -> dict[str, Any]:
    """Minimal honest work until the Meta side lands: report this module's run history size."""
    return {"previous_runs": ModuleRun.objects.filter(module__code=run.module_code).exclude(pk=run.run_id).count()}


for _spec in MODULES:
    globals()[_spec.task.rsplit(".", 1)[1]] = module_job(_spec.code)(_count_own_runs)
