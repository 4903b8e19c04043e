"""Portal accounts: sign-up, sign-in and password reset. Never imports Flask."""
