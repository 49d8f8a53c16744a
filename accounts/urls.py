from django.urls import include, path

from accounts import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("profile/", views.profile, name="profile"),
    path("profile/export/", views.export, name="profile-export"),
    path("profile/delete/", views.delete_account, name="profile-delete"),
    # Django's own, with the address of a password change audited.
    path("password_change/", views.PasswordChangeView.as_view(), name="password_change"),
    path("reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    # login, logout (POST), the rest of password_change, password_reset and friends.
    path("", include("django.contrib.auth.urls")),
]
