"""``obdal-webhooks``: an app's events, signed (Standard Webhooks) and delivered durably to its endpoints."""
