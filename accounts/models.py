from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A Parley user. Custom from day one so that later fields need no painful migration."""

    display_name = models.CharField(
        max_length=80, blank=True, help_text="The name other people see in calls. Defaults to the username."
    )

    def __str__(self) -> str:
        return self.username

    @property
    def name_shown(self) -> str:
        return self.display_name or self.username
