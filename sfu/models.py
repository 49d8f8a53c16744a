from django.db import models
from django.db.models import Q


class JanusRoom(models.Model):
    """The Janus VideoRoom of a call in SFU mode (docs/sfu.md). Its secret and pin never leave the server: clients
    reach the room only through their signaling socket. One per call; while it exists the call is in SFU mode."""

    call = models.OneToOneField("calls.Call", on_delete=models.CASCADE, related_name="janus_room")
    room = models.BigIntegerField(unique=True, help_text="The room's number in Janus.")
    secret = models.CharField(max_length=64)
    pin = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(room__gt=0), name="sfu_janusroom_room_positive")]

    def __str__(self) -> str:
        return f"Janus room {self.room} of call {self.call_id}"
