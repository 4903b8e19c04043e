"""What can go wrong talking to an EHR, each with words a patient can read.

`public_message` (and `title`) are safe to show: no tokens, codes, exception names, HTTP
codes or OAuth terms. `str(error)` and `log_fields()` are for logs: they say which step
failed, the OAuth `error` code, the HTTP status and the EHR, but never a secret.

Words may name the clinic: `{clinic}` (or `{Clinic}` at the start of a sentence) is filled
with the EHR's name once it is known (`at()`), else with "your clinic".
"""

from __future__ import annotations

import re
import secrets
from enum import StrEnum
from typing import Any, Self


class Step(StrEnum):
    """Where connecting to an EHR failed (for the clinic's IT team)."""

    DISCOVERY = "discovery"
    AUTHORIZE = "authorize"
    TOKEN = "token"  # noqa: S105  (a step name, not a secret)
    REFRESH = "refresh"


# Words by cause, shared by the errors below.
_SETUP_TITLE = "{Clinic} is not accepting the portal's sign-in"
_SETUP = (
    "{Clinic} does not accept the portal's sign-in right now. This is a set-up problem on "
    "their side or ours, so trying again will not help. Please tell {clinic} and give them "
    "the reference below. Nothing was connected."
)
_TEMPORARY_TITLE = "{Clinic} is not answering right now"
_TEMPORARY = (
    "{Clinic} did not answer the portal's sign-in just now, so nothing was connected. "
    "Please try again in a few minutes."
)
_INVALID_TITLE = "Your clinic was not connected"
_INVALID = (
    "{Clinic} answered the portal's sign-in with something the portal cannot use, so nothing "
    "was connected. Please try again later; if it keeps happening, tell {clinic} and give "
    "them the reference below."
)
_RESTART_TITLE = "Please start connecting again"

_REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # letters only: never read as a code
_OAUTH_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def failure_reference() -> str:
    """A short random reference for one failure, shown to the patient and logged."""
    letters = "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


def oauth_code(value: Any) -> str | None:
    """An OAuth `error` code fit for a log (RFC 6749 codes are short lower-case words)."""
    if not isinstance(value, str) or not value:
        return None
    return value if _OAUTH_CODE.match(value) else "unrecognised"


def _fill(words: str, clinic: str | None) -> str:
    name = clinic or "your clinic"
    return words.replace("{Clinic}", name[:1].upper() + name[1:]).replace("{clinic}", name)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


class SmartError(Exception):
    """Base of every SMART client error."""

    title = _INVALID_TITLE
    words = _INVALID
    public_message = _fill(_INVALID, None)
    status = 502  # what a view should answer with
    step: Step | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "words" in cls.__dict__:
            cls.public_message = _fill(cls.words, None)
        elif "public_message" in cls.__dict__:
            cls.words = cls.public_message

    def __init__(
        self,
        detail: str = "",
        public_message: str | None = None,
        *,
        step: Step | None = None,
        oauth_error: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(detail or type(self).__name__)
        self._words = public_message or self.words
        self.public_message = _fill(self._words, None)
        if step is not None:
            self.step = step
        self.oauth_error = oauth_code(oauth_error)
        self.http_status = http_status
        self.ehr_id: int | None = None
        self.ehr_name: str | None = None

    def at(self, ehr_id: int, ehr_name: str) -> Self:
        """Name the EHR this happened with (in the log and in the patient's words)."""
        if self.ehr_id is None:
            self.ehr_id, self.ehr_name = ehr_id, ehr_name
            self.public_message = _fill(self._words, ehr_name)
        return self

    @property
    def public_title(self) -> str:
        return _fill(self.title, self.ehr_name)

    def log_fields(self) -> str:
        """step, OAuth error code, HTTP status and EHR, for a log line; never a secret."""
        ehr = f"{self.ehr_id} ({_printable(self.ehr_name or '')})" if self.ehr_id else "unknown"
        return (
            f"step={self.step or 'unknown'} error={self.oauth_error or '-'} "
            f"http_status={self.http_status or '-'} ehr={ehr} "
            f"cause={type(self).__name__}: {_printable(str(self))}"
        )


class SetupProblem(SmartError):
    """The portal and the EHR do not agree on the portal's registration; retrying won't help."""

    title = _SETUP_TITLE
    words = _SETUP
    # The clinic refused the portal's registration: an upstream answer (Bad Gateway), neither
    # the patient's doing nor temporary; the page and the log say it is a set-up problem.
    status = 502


class ConfigurationError(SetupProblem):
    """The portal's own setup for this EHR is incomplete (missing key, secret, endpoint)."""

    status = 500  # our side


class RegistrationRejected(SetupProblem):
    """The EHR refused the portal itself: unknown or unauthorised client, redirect URI or
    scopes it was not registered with (invalid_client, unauthorized_client, invalid_scope...)."""


class DiscoveryError(SmartError):
    """The EHR's SMART configuration is missing, unreachable or unsafe."""

    step = Step.DISCOVERY


class DiscoveryRefused(DiscoveryError):
    """The SMART configuration is not where the registry says (404, 401, 403...): the FHIR
    base registered for this EHR is wrong, or the EHR does not serve the portal."""

    title = _SETUP_TITLE
    words = _SETUP
    status = 502


class DiscoveryUnavailable(DiscoveryError):
    """The SMART configuration could not be fetched just now (network, timeout, 5xx)."""

    title = _TEMPORARY_TITLE
    words = _TEMPORARY
    status = 503


class StateError(SmartError):
    """The callback's state is missing, unknown, expired, used or from another browser."""

    title = _RESTART_TITLE
    words = (
        "This sign-in link has expired or was opened in another browser. "
        "Please start connecting again."
    )
    status = 400
    step = Step.AUTHORIZE


class AuthorizationDenied(SmartError):
    """The patient (or the EHR on their behalf) refused to share: `access_denied`."""

    title = "Nothing was shared"
    words = (
        "You chose not to share your record, so nothing was connected. "
        "You can connect again at any time."
    )
    status = 403
    step = Step.AUTHORIZE

    def __init__(self, error: str = "access_denied", description: str | None = None) -> None:
        # Descriptions come from the EHR (or whoever crafted the URL): never shown or logged.
        super().__init__(f"authorization refused: {oauth_code(error)}", oauth_error=error)
        self.error = self.oauth_error or "unrecognised"
        self.description = description


class TokenError(SmartError):
    """The token endpoint refused the request or answered something unusable."""

    step = Step.TOKEN


class SignInNotFinished(TokenError):
    """The sign-in did not finish in time (code expired or already used; the EHR asked the
    patient to sign in or consent again): starting again helps."""

    title = _RESTART_TITLE
    words = (
        "The sign-in at {clinic} did not finish, so nothing was connected. "
        "Please start connecting again."
    )
    status = 400


class SignInUnavailable(TokenError):
    """The EHR failed while signing the patient in (5xx, timeout, refused connection)."""

    title = _TEMPORARY_TITLE
    words = _TEMPORARY
    status = 503


class IdTokenError(TokenError):
    """The id_token failed validation (signature, issuer, audience, expiry, nonce)."""


class ClinicianSignIn(IdTokenError):
    """The sign-in is a clinician's (fhirUser Practitioner or PractitionerRole), not a
    patient's: the portal shows a patient their own record only."""

    title = "This portal is for patients"
    words = (
        "The portal shows patients their own health record, so it cannot be opened from a "
        "clinician's sign-in at {clinic}. Patients open it from their own patient portal at "
        "{clinic}, or sign in to it directly."
    )
    status = 403


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


# --- from an OAuth error answer to the error above that says what it means -------------------

# The portal's registration does not match the EHR's: retrying cannot help.
SETUP_CODES = frozenset(
    {
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "invalid_request",  # e.g. a redirect URI the EHR does not know
        "unsupported_response_type",
        "unsupported_grant_type",
    }
)
TEMPORARY_CODES = frozenset({"server_error", "temporarily_unavailable"})
# OpenID Connect: the EHR wanted the patient to sign in or answer again.
RESTART_CODES = frozenset(
    {"login_required", "consent_required", "interaction_required", "account_selection_required"}
)


def oauth_failure(
    step: Step, error: Any = None, *, http_status: int | None = None, detail: str = ""
) -> SmartError:
    """The error an OAuth error answer (callback `error`, token endpoint error or status)
    stands for: refused by the patient, a set-up problem, temporary, or nonsense."""
    code = oauth_code(error)
    about = detail or f"{step} failed"
    fields: dict[str, Any] = {"step": step, "oauth_error": code, "http_status": http_status}
    if step is Step.AUTHORIZE and code == "access_denied":
        return AuthorizationDenied(code)
    if code in TEMPORARY_CODES or (http_status is not None and http_status >= 500):
        if step is Step.REFRESH:
            return EhrUnavailable(about, **fields)
        return SignInUnavailable(about, **fields)
    if http_status == 429:
        return (EhrUnavailable if step is Step.REFRESH else SignInUnavailable)(about, **fields)
    if code in SETUP_CODES or (code is None and http_status in (401, 403)):
        return RegistrationRejected(about, **fields)
    if code in RESTART_CODES or (step is Step.TOKEN and code == "invalid_grant"):
        return SignInNotFinished(about, **fields)
    return TokenError(about, **fields)
