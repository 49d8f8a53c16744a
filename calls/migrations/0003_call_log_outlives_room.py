import django.db.models.deletion
from django.db import migrations, models


def copy_room_names(apps, schema_editor):
    Call = apps.get_model("calls", "Call")
    for call in Call.objects.select_related("room").iterator():
        call.room_name = call.room.name
        call.save(update_fields=["room_name"])


class Migration(migrations.Migration):
    dependencies = [
        ("calls", "0002_invite"),
    ]

    operations = [
        migrations.AddField(
            model_name="call",
            name="room_name",
            field=models.CharField(default="", help_text="The room's name when the call started.", max_length=100),
            preserve_default=False,
        ),
        migrations.RunPython(copy_room_names, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="call",
            name="room",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="calls",
                to="calls.room",
            ),
        ),
    ]
