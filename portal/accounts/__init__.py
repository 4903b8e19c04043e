"""Portal accounts: sign-up by emailed link, sign-in, password reset. Never imports Flask."""
