"""The personal health record domain. Never imports Flask."""
