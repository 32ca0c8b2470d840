"""Each example starts with the command written at its top, answers a pixel over HTTP, and the event arrives.

Every example runs as its own process on a free loopback port, and each test
stops the process it started.
"""
from __future__ import annotations

import html
import io
import json
import os
import re
import subprocess
import sys
import urllib.error
from typing import Any, Callable

from PIL import Image

from tests.helpers import ROOT, USER_AGENT, Process, free_port

EXAMPLES = ROOT / "examples"


def event_lines(process: Process, name: str) -> Callable[[str], bool]:
    """A predicate for the log sink's JSON line of an event called ``name``."""

    def matches(line: str) -> bool:
        if not line.startswith("{"):
            return False
        event = json.loads(line)
        return name in (event.get("event"), event.get("name"))

    return matches


def assert_gif(status: int, headers: Any, body: bytes) -> None:
    assert status == 200 and headers["Content-Type"] == "image/gif" and body.startswith(b"GIF89a")


def test_plain_wsgi_example(start: Callable[..., Process]) -> None:
    port = free_port()
    server = start(["examples/wsgi_app.py", "--port", str(port)], port, {"PIXEL_SINK": "log:"})
    status, headers, page = server.get("/")
    pixel = html.unescape(re.search(rb'src="([^"]+)"', page).group(1).decode())
    assert pixel.startswith(f"http://127.0.0.1:{port}/v1/pixel/page?")
    assert_gif(*server.get(pixel.split(str(port), 1)[1]))
    assert_gif(*server.get("/v1/pixel/track?wk=demo-key&e=Signed+Up&uid=u-1"))
    page_view = json.loads(server.wait_for(event_lines(server, "Hello")))
    assert page_view["type"] == "page" and page_view["anonymousId"] == "wsgi-visitor"
    signed_up = json.loads(server.wait_for(event_lines(server, "Signed Up")))
    assert signed_up["userId"] == "u-1" and signed_up["context"]["userAgent"] == USER_AGENT
    assert_no_write_key_logged(server, "demo-key")


def test_django_example(start: Callable[..., Process], tmp_path: Any) -> None:
    port = free_port()
    env = {"PIXEL_SINK": "log:", "PIXEL_WRITE_KEYS": "demo-key", "EXAMPLE_DB": str(tmp_path / "db.sqlite3")}
    migrate = subprocess.run([sys.executable, "examples/django_project/manage.py", "migrate", "--verbosity", "0"],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stderr
    server = start(["examples/django_project/manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], port, env)
    status, headers, page = server.get("/")
    assert status == 200 and b"Django with pixel_middleware.django" in page
    pixel = html.unescape(re.search(rb'src="([^"]+)"', page).group(1).decode())
    assert pixel.startswith(f"http://127.0.0.1:{port}/v1/pixel/page?") and "&sig=" in pixel
    assert_gif(*server.get(pixel.split(str(port), 1)[1]))
    opened = html.unescape(re.search(rb"<code>([^<]+)</code>", page).group(1).decode())
    for _ in range(2):
        assert_gif(*server.get(opened.split(str(port), 1)[1]))
    assert_gif(*server.get("/v1/pixel/track?wk=demo-key&e=Order+Completed&uid=u-9&p.revenue=29.99"))
    assert_gif(*server.get("/v1/pixel/track?wk=not-accepted&e=Forged&uid=u-9"))
    home = json.loads(server.wait_for(event_lines(server, "Home")))
    assert home["type"] == "page" and home["context"]["pixel"]["signed"] is True
    order = json.loads(server.wait_for(event_lines(server, "Order Completed")))
    assert order["properties"] == {"revenue": 29.99} and order["context"]["userAgent"] == USER_AGENT
    server.wait_for(lambda line: "pixel rejected: invalid_write_key" in line)
    assert not any(event_lines(server, "Forged")(line) for line in server.output().splitlines())
    assert json.loads(server.get("/stats.json")[2]) == {"spring-sale": 2}  # the receiver's model
    cta = html.unescape(re.search(rb'<a id="cta" href="([^"]+)"', page).group(1).decode())
    assert cta.startswith(f"http://127.0.0.1:{port}/v1/click?") and "&sig=" in cta
    assert_no_write_key_logged(server, "demo-key", "not-accepted")


def test_flask_example(start: Callable[..., Process]) -> None:
    port = free_port()
    server = start(
        ["examples/flask_app/app.py", "--port", str(port)], port, {"PIXEL_SINK": "log:", "PIXEL_WRITE_KEY": "demo-key"}
    )
    status, headers, page = server.get("/emails/spring-sale/preview?user=u-1002")
    assert status == 200 and b"Spring sale" in page
    pixel = html.unescape(re.search(rb'<img src="([^"]+/v1/pixel/track[^"]+)"', page).group(1).decode())
    assert pixel.startswith(f"http://127.0.0.1:{port}/v1/pixel/track?")
    assert {"wk=demo-key", "e=Email+Opened"} <= set(pixel.split("?", 1)[1].split("&"))
    path = pixel.split(str(port), 1)[1]
    for _ in range(2):
        assert_gif(*server.get(path))
    # Apple's MPP proxy: the bare user agent from Apple's network (a loopback test cannot come from 17.0.0.0/8,
    # so a crawler stands in for the machine here; tests/test_agents.py covers MPP itself).
    assert_gif(*server.get(path, user_agent="Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"))
    assert json.loads(server.get("/stats.json")[2]) == {"spring-sale": 3}
    assert json.loads(server.get("/stats/opens.json")[2]) == {"spring-sale": {"people": 2, "machines": 1, "unique": 1}}
    stats = server.get("/stats")[2]
    assert b'id="opens-spring-sale">3<' in stats and b'id="people-spring-sale">2<' in stats
    assert b'id="machines-spring-sale">1<' in stats and b'id="unique-spring-sale">1<' in stats
    opened = json.loads(server.wait_for(event_lines(server, "Email Opened")))
    assert opened["userId"] == "u-1002" and opened["properties"] == {"campaign_id": "spring-sale"}
    # The newsletter's call to action is a signed click URL; following it lands on the shop's page.
    cta = html.unescape(re.search(rb'<a href="([^"]+)" id="cta"', page).group(1).decode())
    assert cta.startswith(f"http://127.0.0.1:{port}/v1/click?") and "&sig=" in cta
    status, _, landed = server.get(cta.split(str(port), 1)[1])
    assert status == 200 and b"Shop: sale" in landed
    clicked = json.loads(server.wait_for(event_lines(server, "Email Link Clicked")))
    assert clicked["userId"] == "u-1002" and clicked["context"]["pixel"]["signed"] is True
    assert clicked["properties"] == {"campaign_id": "spring-sale", "link_url": f"http://127.0.0.1:{port}/shop/sale"}
    # The email's images are images: its logo, and each product's picture.
    images = re.findall(rb'<img src="(http://127\.0\.0\.1:\d+/shop/static/[^"]+)"', page)
    assert len(images) == 4
    for src in images:
        status, headers, body = server.get(src.decode().split(str(port), 1)[1])
        kind = "png" if src.endswith(b".png") else "jpeg"
        assert status == 200 and headers["Content-Type"] == f"image/{kind}"
        with Image.open(io.BytesIO(body)) as image:
            assert image.format == kind.upper() and image.width > 1
    assert_no_write_key_logged(server, "demo-key")


def test_fastapi_example(start: Callable[..., Process]) -> None:
    port = free_port()
    server = start(["examples/fastapi_app.py", "--port", str(port)], port,
                   {"PIXEL_SINK": "log:", "PIXEL_WRITE_KEY": "demo-key"})
    status, headers, page = server.get("/emails/spring-sale/preview?user=u-1002")
    assert status == 200 and b"Spring sale" in page and b"Hello Grace" in page
    pixel = html.unescape(re.search(rb'<img src="([^"]+/v1/pixel/track[^"]+)"', page).group(1).decode())
    assert pixel.startswith(f"http://127.0.0.1:{port}/v1/pixel/track?") and "&sig=" in pixel
    assert {"wk=demo-key", "e=Email+Opened", "uid=u-1002"} <= set(pixel.split("?", 1)[1].split("&"))
    path = pixel.split(str(port), 1)[1]
    for _ in range(2):
        assert_gif(*server.get(path))
    opened = json.loads(server.wait_for(event_lines(server, "Email Opened")))
    assert opened["userId"] == "u-1002" and opened["properties"] == {"campaign_id": "spring-sale"}
    assert opened["context"]["pixel"]["signed"] is True and opened["context"]["userAgent"] == USER_AGENT
    assert json.loads(server.get("/stats.json")[2]) == {"spring-sale": 2}
    # The call to action became a signed click URL; following it lands on the shop's page. mailto: stays.
    cta = html.unescape(re.search(rb'<a href="([^"]+)" id="cta"', page).group(1).decode())
    assert cta.startswith(f"http://127.0.0.1:{port}/v1/click?") and "&sig=" in cta
    assert b'href="mailto:help@example.com"' in page
    status, _, landed = server.get(cta.split(str(port), 1)[1])
    assert status == 200 and b"Shop: sale" in landed
    clicked = json.loads(server.wait_for(event_lines(server, "Email Link Clicked")))
    assert clicked["userId"] == "u-1002" and clicked["context"]["pixel"]["signed"] is True
    assert clicked["properties"] == {"campaign_id": "spring-sale", "link_url": f"http://127.0.0.1:{port}/shop/sale"}
    # Paths nobody routes are FastAPI's: its JSON 404.
    try:
        server.get("/v1/pixel/trackers")
    except urllib.error.HTTPError as error:
        assert error.code == 404 and json.loads(error.read()) == {"detail": "Not Found"}
    else:
        raise AssertionError("an unknown path answered")
    assert_no_write_key_logged(server, "demo-key")


def assert_no_write_key_logged(process: Process, *keys: str) -> None:
    """A development server's access log printed each request's URL, write key and all: now hidden."""
    process.wait_for(lambda line: "[query hidden]" in line)  # requests are still logged, without their queries
    output = process.output()
    for key in keys:
        assert key not in output, output
