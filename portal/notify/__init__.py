"""Notifications to people: plain-text mail through one small interface (portal.notify.mail)."""
