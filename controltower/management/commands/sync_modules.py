from django.core.management.base import BaseCommand

from controltower.schedules import sync_modules, sync_tower_tasks


class Command(BaseCommand):
    help = "Create or update the 17 modules, their periodic tasks and the tower's own tasks (idempotent)."

    def handle(self, *args, **options) -> None:
        report = sync_modules()
        tower_tasks = sync_tower_tasks()
        self.stdout.write(
            f"Modules: {len(report.created)} created, {len(report.updated)} updated. "
            f"Tower tasks: {', '.join(tower_tasks)}."
        )
