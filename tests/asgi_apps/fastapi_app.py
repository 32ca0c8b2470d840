"""FastAPI with ``app.add_middleware(PixelASGIMiddleware, ...)``: ``tests.asgi_apps.fastapi_app:app``."""
from fastapi import FastAPI

from pixel_middleware import PixelASGIMiddleware
from tests.asgi_apps import options

app = FastAPI()
app.add_middleware(PixelASGIMiddleware, **options())


@app.get("/hello")
def hello() -> dict:
    return {"framework": "fastapi"}
