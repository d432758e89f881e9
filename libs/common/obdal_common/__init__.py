"""Obdal."""
