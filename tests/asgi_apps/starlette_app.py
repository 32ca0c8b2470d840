"""Starlette with ``Middleware(PixelASGIMiddleware, ...)``: ``tests.asgi_apps.starlette_app:app``."""
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pixel_middleware import PixelASGIMiddleware
from tests.asgi_apps import options


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"framework": "starlette"})


app = Starlette(routes=[Route("/hello", hello)], middleware=[Middleware(PixelASGIMiddleware, **options())])
