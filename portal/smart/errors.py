"""What can go wrong talking to an EHR, each with words a patient can read.

`public_message` is safe to show (no tokens, codes or record contents); `str(error)` is for
logs and may name the step that failed but never a secret.
"""

from __future__ import annotations


class SmartError(Exception):
    """Base of every SMART client error."""

    public_message = "Something went wrong while talking to your health record system."
    status = 502  # what a view should answer with

    def __init__(self, detail: str = "", public_message: str | None = None) -> None:
        super().__init__(detail or self.public_message)
        if public_message is not None:
            self.public_message = public_message


class ConfigurationError(SmartError):
    """The portal's own setup for this EHR is incomplete (missing key, secret, endpoint)."""

    public_message = "This health record system is not set up correctly in the portal yet."
    status = 500


class DiscoveryError(SmartError):
    """The EHR's SMART configuration is missing, unreachable or unsafe."""

    public_message = (
        "We could not reach your health record system to sign you in. Please try again later."
    )


class StateError(SmartError):
    """The callback's state is missing, unknown, expired, used or from another browser."""

    public_message = (
        "This sign-in link has expired or was opened in another browser. "
        "Please start connecting again."
    )
    status = 400


class AuthorizationDenied(SmartError):
    """The EHR answered the authorization request with an `error`."""

    public_message = "Your health record system did not share your record with the portal."
    status = 400

    def __init__(self, error: str, description: str | None = None) -> None:
        # The error code is from a fixed OAuth vocabulary; descriptions are not shown.
        safe = error if error.replace("_", "").isalnum() else "unknown_error"
        super().__init__(f"authorization refused: {safe[:40]}")
        self.error = safe[:40]
        self.description = description
        if self.error == "access_denied":
            self.public_message = (
                "You chose not to share your record, so nothing was connected. "
                "You can connect again at any time."
            )


class TokenError(SmartError):
    """The token endpoint refused the request or answered something unusable."""

    public_message = (
        "Your health record system did not complete the sign-in. Please start connecting again."
    )


class IdTokenError(TokenError):
    """The id_token failed validation (signature, issuer, audience, expiry, nonce)."""


class IdentityMissing(TokenError):
    """The EHR did not say who signed in (no id_token `sub`), so no account can be chosen."""

    public_message = (
        "Your health record system did not tell the portal who you are, so we cannot sign "
        "you in from it."
    )


class ConnectionUnavailable(SmartError):
    """The connection cannot be used until the patient acts."""

    status = 409


class ReconnectNeeded(ConnectionUnavailable):
    """The EHR no longer accepts the stored grant (invalid_grant); local data is kept."""

    public_message = (
        "Your connection to this health record system has ended. Reconnect to fetch new "
        "records; everything already in the portal is still here."
    )


class NotConnected(ConnectionUnavailable):
    """The patient disconnected this EHR; there are no tokens any more."""

    public_message = "This health record system is disconnected."


class EhrUnavailable(SmartError):
    """The EHR could not be reached or kept failing (network, 5xx, rate limits)."""

    public_message = (
        "Your health record system is not answering right now. What was fetched before is "
        "still shown."
    )
    status = 503


class FhirRequestError(SmartError):
    """A FHIR request failed for good (an HTTP error, or an unsafe link that was refused)."""

    def __init__(self, detail: str, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code


class UnsafeLink(FhirRequestError):
    """A URL pointed outside the connection's FHIR base, or a paging link looped."""
