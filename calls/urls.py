from django.urls import path

from calls import views

urlpatterns = [
    path("", views.home, name="home"),
    path("rooms/<slug:slug>/", views.room_detail, name="room"),
    path("rooms/<slug:slug>/settings/", views.room_settings, name="room-settings"),
    path("rooms/<slug:slug>/call-state/", views.room_call_state, name="room-call-state"),
    path("calls/", views.call_history, name="call-history"),
    path("calls/<int:pk>/", views.call_detail, name="call-detail"),
    path("invite/<str:token>/", views.accept_invite, name="invite"),
]
