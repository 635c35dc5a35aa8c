"""Who may see the console and who may act, as view decorators.

The tower's roles (controltower.roles), as the API has them: every page needs an active staff
account; every action also needs `controltower.operate_tower`. Anonymous visitors are sent
to the admin login; signed-in users without the right get a 403 page.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from controltower import roles
from controltower.rate_limits import seconds_to_wait

View = Callable[..., HttpResponse]


def can_operate(request: HttpRequest) -> bool:
    return roles.is_operator(request.user)


def _forbidden(request: HttpRequest, why: str, status: int = 403) -> HttpResponse:
    return TemplateResponse(request, "console/forbidden.html", {"why": why, "status": status}, status=status)


def staff_required(view: View) -> View:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not roles.is_viewer(user):
            return _forbidden(request, "The Control Tower console needs a staff account.")
        return view(request, *args, **kwargs)

    return wrapper


def operator_required(view: View) -> View:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_operate(request):
            return _forbidden(request, "This action needs the operate_tower permission (group “Tower operators”).")
        return view(request, *args, **kwargs)

    return staff_required(wrapper)


def passive(view: View) -> View:
    """For polled endpoints: a background refresh is not activity, so it must not renew the
    idle session (SESSION_SAVE_EVERY_REQUEST would otherwise keep a forgotten tab signed in)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if not request.session.modified:
            request.session.save = lambda must_create=False: None  # the session middleware's save is skipped
        return response

    return wrapper


def throttled(scope: str) -> Callable[[View], View]:
    """A form post counts against the same per-user limit as the API endpoint of `scope`
    (KILL_SWITCH_THROTTLE_RATE, COMMAND_THROTTLE_RATE): past it, 429 with Retry-After."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            wait = seconds_to_wait(request, scope) if request.method == "POST" else None
            if wait is None:
                return view(request, *args, **kwargs)
            response = _forbidden(
                request,
                f"Too many requests of this kind from your account: try again in {math.ceil(wait)} s.",
                status=429,
            )
            response["Retry-After"] = str(math.ceil(wait))
            return response

        return wrapper

    return decorate
