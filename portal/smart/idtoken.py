"""OpenID Connect id_token validation (SMART App Launch `openid fhirUser`).

Signature against the EHR's jwks_uri (asymmetric algorithms only, never `none` or HMAC),
`iss` = the EHR's issuer, `aud` contains our client_id, `exp`/`iat` within a small leeway,
`nonce` = the one sent with the authorization request, `fhirUser` a Patient, RelatedPerson
or Person.
"""

from __future__ import annotations

import hmac
import time
from typing import Any
from urllib.parse import urlsplit

from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from portal.smart.discovery import SmartConfiguration, jwks
from portal.smart.errors import ClinicianSignIn, IdTokenError
from portal.smart.settings import SmartSettings

ALLOWED_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]
LEEWAY = 60  # seconds of clock skew tolerated on exp and iat
PATIENT_FACING_USERS = ("Patient", "RelatedPerson", "Person")
CLINICIAN_USERS = ("Practitioner", "PractitionerRole")


def validate_id_token(
    id_token: str,
    *,
    config: SmartConfiguration,
    client_id: str,
    nonce: str,
    settings: SmartSettings,
) -> dict[str, Any]:
    """The id_token's claims, or IdTokenError saying which check failed."""
    if not config.jwks_uri:
        raise IdTokenError("an id_token was sent but the EHR publishes no jwks_uri")
    claims = _decode(id_token, config.jwks_uri, settings)
    if claims.get("iss") != config.issuer:
        raise IdTokenError("id_token issuer is not this EHR's issuer")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if client_id not in audiences:
        raise IdTokenError("id_token audience does not contain our client_id")
    azp = claims.get("azp")
    if azp is not None and azp != client_id:
        raise IdTokenError("id_token azp is not our client_id")
    now = time.time()
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or exp < now - LEEWAY:
        raise IdTokenError("id_token has expired or has no exp")
    if not isinstance(iat, int | float) or iat > now + LEEWAY:
        raise IdTokenError("id_token iat is missing or in the future")
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, nonce):
        raise IdTokenError("id_token nonce does not match the authorization request")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise IdTokenError("id_token has no sub")
    fhir_user = claims.get("fhirUser")
    if fhir_user is None:
        return claims
    kind = fhir_user_type(fhir_user) if isinstance(fhir_user, str) else None
    if kind in CLINICIAN_USERS:
        raise ClinicianSignIn(f"fhirUser is a {kind}: a clinician's launch")
    if kind not in PATIENT_FACING_USERS:
        raise IdTokenError(
            "fhirUser is not a Patient, RelatedPerson or Person",
            public_message="This portal is for patients and the people they share with; "
            "a clinician's sign-in cannot be used here.",
        )
    return claims


def fhir_user_type(fhir_user: str) -> str | None:
    """`Patient` of `.../Patient/123` or `Patient/123`."""
    segments = [s for s in urlsplit(fhir_user).path.split("/") if s]
    return segments[-2] if len(segments) >= 2 else None


def _decode(id_token: str, jwks_uri: str, settings: SmartSettings) -> dict[str, Any]:
    for refresh in (False, True):
        try:
            keys = KeySet.import_key_set(jwks(jwks_uri, refresh=refresh, settings=settings))  # type: ignore[arg-type]  # a JWKS dict
            token = jwt.decode(id_token, keys, algorithms=ALLOWED_ALGORITHMS)
        except InvalidKeyIdError:
            if refresh:
                raise IdTokenError(
                    "id_token is signed with a key the EHR does not publish"
                ) from None
            continue  # the EHR may have rotated its keys: refetch once
        except (JoseError, ValueError) as exc:
            raise IdTokenError(
                f"id_token signature or format is invalid ({type(exc).__name__})"
            ) from None
        return dict(token.claims)
    raise IdTokenError("id_token could not be verified")  # pragma: no cover - loop returns
