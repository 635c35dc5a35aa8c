"""The one question the stack asks the tower: may modules act right now?

meta_modules never imports controltower (the dependency points one way); the tower's
state row is looked up by name at call time instead.
"""

from __future__ import annotations

from django.apps import apps


def operations_halted() -> bool:
    """True while an emergency stop is active: module jobs and Meta writes must not act."""
    tower_state = apps.get_model("controltower", "TowerState")
    return tower_state.objects.filter(pk=1, emergency_stop_active=True).exists()
