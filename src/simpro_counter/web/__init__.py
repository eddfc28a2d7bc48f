"""The HTTP service: the original's four endpoints, the other metrics, growth history,
health and metrics, the widget and demo pages, the webhook receiver and the admin pages."""

from simpro_counter.web.app import create_app

__all__ = ["create_app"]
