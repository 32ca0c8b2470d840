"""``PixelMiddleware`` as a user deploys it on any PEP 3333 server: ``tests.servers.pixel_app:app``.

``PIXEL_TEST_EVENTS`` is the file sink's path; ``PIXEL_TEST_AFTER_RESPONSE=1`` records each event as
the server closes the response.
"""
import os

from pixel_middleware import FileSink, PixelMiddleware
app = PixelMiddleware(None, sink=FileSink(os.environ["PIXEL_TEST_EVENTS"]),
                      after_response=os.environ.get("PIXEL_TEST_AFTER_RESPONSE") == "1")
