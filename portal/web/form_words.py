"""The portal's words for the messages of the form library (wtforms).

A field or validator given no message of its own says wtforms' default ("Field cannot be longer
than 20 characters.", "Not a valid choice."); wtforms asks its translations for that text, so
PortalForm's translations (below) answer with the portal's words instead. Every message in
wtforms' catalog has an entry here (tests/web/test_form_words.py reads the catalog).
"""

from __future__ import annotations

# msgid (the singular one for plural messages) -> (singular, plural) in the portal's words.
# wtforms formats them afterwards with %(min)d, %(max)d, %(length)d, %(other_name)s ...
WORDS: dict[str, tuple[str, str]] = {}


def _say(msgid: str, words: str, plural: str | None = None) -> None:
    WORDS[msgid] = (words, plural or words)


TOO_LONG = "That is too long: use at most %(max)d characters (this has %(length)d)."
TOO_SHORT = "That is too short: use at least %(min)d characters."
CHOOSE = "Choose one of the options given."

_say(
    "Field cannot be longer than %(max)d character.",
    "That is too long: use at most %(max)d character (this has %(length)d).",
    TOO_LONG,
)
_say(
    "Field must be at least %(min)d character long.",
    "That is too short: use at least %(min)d character.",
    TOO_SHORT,
)
_say(
    "Field must be exactly %(max)d character long.",
    "Use exactly %(max)d character.",
    "Use exactly %(max)d characters.",
)
_say(
    "Field must be between %(min)d and %(max)d characters long.",
    "Use between %(min)d and %(max)d characters (this has %(length)d).",
)
_say("Field must be equal to %(other_name)s.", "This must be the same as the one above.")
_say("Invalid field name '%s'.", "Check this answer: the portal could not use it.")
_say("Number must be at least %(min)s.", "Enter %(min)s or more.")
_say("Number must be at most %(max)s.", "Enter %(max)s or less.")
_say("Number must be between %(min)s and %(max)s.", "Enter a number from %(min)s to %(max)s.")
_say("Date must be at least %(min)s.", "Enter a date on or after %(min)s.")
_say("Date must be at most %(max)s.", "Enter a date on or before %(max)s.")
_say("Date must be between %(min)s and %(max)s.", "Enter a date from %(min)s to %(max)s.")
_say("This field is required.", "Fill this in: it is needed.")
_say("Invalid input.", "Check this answer: the portal could not use it.")
_say("Invalid email address.", "Enter an email address, like name@example.org.")
_say("Invalid IP address.", "Enter an internet address, like 192.0.2.1.")
_say("Invalid Mac address.", "Enter a network card address, like 00:1a:2b:3c:4d:5e.")
_say("Invalid URL.", "Enter a web address, like https://example.org.")
_say("Invalid UUID.", "Check this answer: the portal could not use it.")
_say("Invalid value, must be one of: %(values)s.", "Enter one of: %(values)s.")
_say("Invalid value, can't be any of: %(values)s.", "Enter something other than %(values)s.")
_say("This field cannot be edited.", "This cannot be changed here.")
_say("This field is disabled and cannot have a value.", "This cannot be filled in here.")
_say("Invalid CSRF Token.", "The page was too old to send. Try again.")
_say("CSRF token missing.", "The page was too old to send. Try again.")
_say("CSRF failed.", "The page was too old to send. Try again.")
_say("CSRF token expired.", "The page was too old to send. Try again.")
_say("Invalid Choice: could not coerce.", CHOOSE)
_say("Choices cannot be None.", CHOOSE)
_say("Not a valid choice.", CHOOSE)
_say("Invalid choice(s): one or more data inputs could not be coerced.", CHOOSE)
_say(
    "'%(value)s' is not a valid choice for this field.",
    CHOOSE,
    CHOOSE,
)
_say("Not a valid datetime value.", "Enter a real date and time.")
_say("Not a valid date value.", "Enter a real date (day, month and year).")
_say("Not a valid time value.", "Enter a real time of day.")
_say("Not a valid week value.", "Enter a week of the year.")
_say("Not a valid integer value.", "Enter a whole number, like 72.")
_say("Not a valid decimal value.", "Enter a number, like 72 or 72.5.")
_say("Not a valid float value.", "Enter a number, like 72 or 72.5.")

UNKNOWN = "Check this answer: the portal could not use it."


class PortalTranslations:
    """What wtforms calls `translations`: its default messages in the portal's words."""

    def gettext(self, string: str) -> str:
        return WORDS.get(string, (UNKNOWN, UNKNOWN))[0]

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        one, many = WORDS.get(singular, (UNKNOWN, UNKNOWN))
        return one if n == 1 else many


TRANSLATIONS = PortalTranslations()
