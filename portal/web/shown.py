"""How the record is shown to the signed-in person: their units and time zone for every page
of this request, the browser's zone taken at sign-in, and the account page's form to change
both."""

from __future__ import annotations

from flask import Flask, current_app, g, session
from wtforms import HiddenField, RadioField, SelectField
from wtforms.fields.choices import SelectChoice

from portal.accounts import shown
from portal.models import Account
from portal.phr import preferences
from portal.phr.preferences import UNIT_SYSTEM_WORDS, Preferences
from portal.web.auth import current_account
from portal.web.forms import PortalForm


class ShownForm(PortalForm):
    units = RadioField(
        "Units",
        choices=[SelectChoice(system.value, words) for system, words in UNIT_SYSTEM_WORDS.items()],
    )
    zone = SelectField("Time zone")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.zone.choices = [
            SelectChoice(name, name.replace("_", " ")) for name in preferences.zone_names()
        ]


def browser_zone_field() -> HiddenField:
    """The sign-in form's hidden field that static/portal.js fills with the browser's zone."""
    return HiddenField(render_kw={"data-browser-zone": ""})


def remember_browser_zone(account: Account, name: object) -> None:
    """At sign-in: the browser's zone, unless the person chose theirs (unknown: ignored)."""
    shown.browser_zone(account, name)


def choose(account: Account, form: ShownForm) -> bool:
    """What the person chose on the account page (False: not a choice we offer)."""
    return shown.choose(account, form.units.data, form.zone.data)


def prefs_of(account: Account | None) -> Preferences:
    config = current_app.config
    return shown.preferences_of(account, config["DEFAULT_UNITS"], config["DEFAULT_TIME_ZONE"])


def form_for(account: Account) -> ShownForm:
    """The account page's form, holding what the person sees now."""
    now = prefs_of(account)
    form = ShownForm(formdata=None)
    form.units.data = now.units.value
    form.zone.data = now.zone
    return form


def _begin() -> None:
    """Every page of this request in the signed-in person's units and time zone."""
    if session.get("account_id") is None:
        return
    g.shown_token = preferences.begin(prefs_of(current_account()))


def _end(_error: BaseException | None) -> None:
    token = g.pop("shown_token", None)
    if token is not None:
        preferences.end(token)


def install(app: Flask) -> None:
    app.before_request(_begin)
    app.teardown_request(_end)
