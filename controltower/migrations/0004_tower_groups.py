"""The groups "Tower viewers" (read) and "Tower operators" (read + operate_tower)."""

from django.db import migrations

from controltower.roles import sync_tower_groups


def create_groups(apps, schema_editor):
    sync_tower_groups(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("controltower", "0003_alerts_locks_heartbeat"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    # Reversing keeps the groups: an admin may have given them to people.
    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
