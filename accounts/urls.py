from django.urls import include, path

from accounts import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("profile/", views.profile, name="profile"),
    path("profile/export/", views.export, name="profile-export"),
    path("profile/delete/", views.delete_account, name="profile-delete"),
    # login, logout (POST), password_change, password_reset and friends.
    path("", include("django.contrib.auth.urls")),
]
