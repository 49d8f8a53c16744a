from django.apps import AppConfig


class SfuConfig(AppConfig):
    name = "sfu"
    verbose_name = "SFU (Janus)"
