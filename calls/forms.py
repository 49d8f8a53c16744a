from django import forms

from calls.models import Room


class RoomForm(forms.ModelForm):
    class Meta:
        model = Room
        fields = ("name", "visibility", "max_participants")
        widgets = {"name": forms.TextInput(attrs={"placeholder": "Weekly sync", "autocomplete": "off"})}
