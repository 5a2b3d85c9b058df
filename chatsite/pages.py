"""The site's own small pages and page furniture: the product name on every page, the
favicon at the address browsers ask for, and the friendly 404 with DEBUG on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

FAVICON = "favicon.svg"


def site(request: HttpRequest) -> dict[str, str]:
    """Context processor: the product's name (SITE_NAME) for every template, as
    `product_name` (Django's sign-in view already sets `site_name`: the domain)."""
    return {"product_name": settings.SITE_NAME}


@require_safe
@cache_control(public=True, max_age=86_400)
def favicon(request: HttpRequest) -> HttpResponse:
    """`/favicon.ico`, which browsers and feed readers ask for whatever the page links:
    the site's SVG icon (from the static files, so it is the one the pages link)."""
    found = finders.find(FAVICON)
    if not found:
        raise Http404("No favicon")
    return HttpResponse(Path(str(found)).read_bytes(), content_type="image/svg+xml")


class FriendlyNotFoundMiddleware:
    """With DEBUG on, Django answers a 404 with its technical page (the URL patterns, the
    settings' names); with DEBUG off it renders templates/404.html. People use the app
    with DEBUG on too (`serve` on a laptop), so a 404 page in HTML is replaced by the
    friendly one in either mode. The status stays 404."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            settings.DEBUG
            and response.status_code == 404
            and response.get("Content-Type", "").startswith("text/html")
            and not getattr(response, "friendly", False)
        ):
            return not_found_page(request)
        return response


def not_found_page(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: the page in the app's layout (whatever the reason, so nothing can be
    learned about which ids exist)."""
    response = render(request, "404.html", status=404)
    response.friendly = True  # type: ignore[attr-defined]
    return response


def forbidden_page(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler403: the page in the app's layout, in both modes."""
    return render(request, "403.html", status=403)
