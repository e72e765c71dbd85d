"""Decorators of the pages' views: who may open them, and how bad input is answered."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required as django_login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from sync.exceptions import BadParameter

View = Callable[..., HttpResponse]


class HtmxHttpRequest(HttpRequest):
    """A request past django-htmx's middleware (settings.MIDDLEWARE), which sets its htmx."""

    htmx: HtmxDetails


def login_required(view: View) -> View:
    """As Django's, and a malformed parameter answers the error page with 400 (as the API does);
    a poll whose session ended takes the whole page to the login form, rather than swapping the
    form into the listing."""
    checked = django_login_required(view)

    @wraps(view)
    def wrapper(request: HtmxHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.htmx and not request.user.is_authenticated:
            return HttpResponseClientRedirect(redirect_to_login(request.path)["Location"])
        try:
            return checked(request, *args, **kwargs)
        except BadParameter as error:
            return bad_request(request, error)

    return wrapper


def staff_required(view: View) -> View:
    """Refuse the view with 403 to a user who is not staff (after login_required)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied("Only staff users may do this.")
        return view(request, *args, **kwargs)

    return wrapper


def bad_request(request: HttpRequest, error: Exception | str) -> HttpResponse:
    return render(request, "sync/error.html", {"message": str(error)}, status=400)
