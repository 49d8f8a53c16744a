from django.urls import path

from calls import views

urlpatterns = [
    path("", views.home, name="home"),
    path("rooms/<slug:slug>/", views.room_detail, name="room"),
    path("rooms/<slug:slug>/settings/", views.room_settings, name="room-settings"),
    path("calls/", views.call_history, name="call-history"),
    path("invite/<str:token>/", views.accept_invite, name="invite"),
]
