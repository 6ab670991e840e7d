"""Views and URLs of the keyledger.django tests."""

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from keyledger.django.rest_framework import HasAPIKey, HasScope


def grant_json(request: Any, grant: Any) -> dict:
    return {"account": grant.account_id, "credits": grant.credits, "charged": grant.charged, "user": str(request.user)}


class Send(APIView):
    permission_classes = [HasScope("sms:send")]

    def post(self, request: Request) -> Response:
        return Response(grant_json(request, request.auth))


class Scoped(APIView):
    permission_classes = [HasAPIKey]
    keyledger_scope, keyledger_cost = "sms:send", 2

    def get(self, request: Request) -> Response:
        return Response(grant_json(request, request.auth))


class Numbers(APIView):
    permission_classes = [HasScope("numbers:read")]
    keyledger_scope = "sms:send"

    def get(self, request: Request) -> Response:
        return Response({})


def plain(request: HttpRequest) -> JsonResponse:
    grant = getattr(request, "keyledger")
    return JsonResponse({"account": grant.account_id, "credits": grant.credits})


async def async_view(request: HttpRequest) -> JsonResponse:
    """An async view: under the AsyncClient the middleware chain before it is async."""
    grant = getattr(request, "keyledger")
    return JsonResponse({"account": grant.account_id, "credits": grant.credits, "charged": grant.charged})


def signed_echo(request: HttpRequest) -> JsonResponse:
    """The body as the view reads it after the middleware checked its signature."""
    return JsonResponse({"body": request.body.decode(), "credits": getattr(request, "keyledger").credits})


async def signed_echo_async(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"body": request.body.decode(), "credits": getattr(request, "keyledger").credits})


class SignedDRF(APIView):
    permission_classes = [HasAPIKey]

    def post(self, request: Request) -> Response:
        return Response({"body": request.body.decode(), "credits": request.auth.credits})


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    path("api/v1/messaging/send", Send.as_view()),
    path("drf/scoped", Scoped.as_view()),
    path("drf/numbers", Numbers.as_view()),
    path("api/v1/numbers/mine", plain),
    path("async/send", async_view),
    path("async/numbers", async_view),
    path("signed/send", signed_echo),
    path("signed/async", signed_echo_async),
    path("drf/signed", SignedDRF.as_view()),
    path("health", health),
]
