from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from people import presence


@login_required
def people(request):
    """People: the user's contacts with their presence and a Call button (static/js/people.js keeps it live)."""
    search = request.GET.get("q", "").replace("\x00", "")[:150]
    contacts = presence.contacts_with_presence(user=request.user, search=search)
    return render(request, "people/people.html", {"contacts": contacts, "search": search})
