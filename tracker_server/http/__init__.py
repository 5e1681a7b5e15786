"""The HTTP front door: the dashboard's files and the REST API (``/api/v1``) over the
same domain services as the gRPC servicers."""

from tracker_server.http.app import create_app
from tracker_server.http.context import RateLimits

__all__ = ["RateLimits", "create_app"]
