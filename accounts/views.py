import json

from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from accounts import audit, services
from accounts.data import export_user_data
from accounts.forms import DeleteAccountForm, ProfileForm, SignUpForm
from accounts.security import client_ip


def changes_password_from(user, request, via: str):
    """Say where the password change about to be saved comes from (accounts.signals hands it to the audit)."""
    user._parley_address, user._parley_via = client_ip(request), via


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = ""
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome to Parley, {user.name_shown}.")
        return redirect(next_url or "home")
    return render(request, "registration/signup.html", {"form": form, "next": next_url})


@login_required
@require_http_methods(["GET", "POST"])
def profile(request):
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Profile saved.")
        return redirect("profile")
    return render(request, "accounts/profile.html", {"form": form})


@login_required
@require_http_methods(["GET"])
def export(request):
    """The user's data as a JSON download (the same as GET /api/me/export/)."""
    audit.record(audit.Action.ACCOUNT_EXPORTED, actor=request.user, target=f"user:{request.user.pk}",
                 address=client_ip(request), via="profile")
    response = HttpResponse(json.dumps(export_user_data(request.user), indent=2), content_type="application/json")
    response["Content-Disposition"] = 'attachment; filename="parley-export.json"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
def delete_account(request):
    form = DeleteAccountForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = request.user
        logout(request)  # first: signing out needs the user's row
        services.delete_account(user=user, address=client_ip(request))
        messages.success(request, "Your account was deleted.")
        return redirect("home")
    return render(request, "accounts/delete_account.html", {"form": form})


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's page; the change is audited with the address it came from."""

    def form_valid(self, form):
        changes_password_from(form.user, self.request, "site")
        return super().form_valid(form)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's page for a reset link; the new password is audited with the address it came from."""

    def form_valid(self, form):
        changes_password_from(form.user, self.request, "reset")
        return super().form_valid(form)
