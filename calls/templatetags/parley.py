from django import template

from calls.models import format_duration

register = template.Library()

register.filter("duration", format_duration)
