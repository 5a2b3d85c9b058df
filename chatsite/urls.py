from django.contrib import admin
from django.urls import include, path

from . import pages

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("favicon.ico", pages.favicon, name="favicon"),
    path("", include("ops.urls")),
    path("", include("support.urls")),
    path("", include("conversations.urls")),
]

# Friendly pages in the app's layout (with DEBUG on, chatsite.pages' middleware shows the
# 404 one too).
handler403 = "chatsite.pages.forbidden_page"
handler404 = "chatsite.pages.not_found_page"
