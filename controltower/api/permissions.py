"""The API's DRF permission classes, over the tower's roles (controltower.roles)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.permissions import BasePermission

from controltower import roles

if TYPE_CHECKING:  # DRF imports this module while rest_framework.views is still loading
    from rest_framework.request import Request
    from rest_framework.views import APIView


class IsTowerViewer(BasePermission):
    """Authenticated staff: may read everything the tower knows."""

    message = "A staff account is required."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return roles.is_viewer(request.user)


class IsTowerOperator(BasePermission):
    """Staff with `controltower.operate_tower`: may run commands, emergency stop and resume."""

    message = "The operate_tower permission is required (group 'Tower operators')."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return roles.is_operator(request.user)
