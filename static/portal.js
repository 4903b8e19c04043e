// A page that watches a sync reloads itself when the sync ends (HX-Refresh). If the person has
// already set off somewhere else, that reload would cancel where they were going: skip it.
let leaving = false;
addEventListener("beforeunload", () => { leaving = true; });
addEventListener("pageshow", () => { leaving = false; });
document.addEventListener("htmx:beforeOnLoad", (event) => {
  if (leaving) event.preventDefault();
});

// The session ended while this page was open (the server's session watch says so): an entry
// form with something typed in it is sent, and the server keeps it as a draft for the next
// sign-in; any other page goes to sign-in, so the record is not left on an unattended screen.
let typed = false;
document.addEventListener("input", (event) => {
  if (event.target.closest && event.target.closest("form[data-entry-form]")) typed = true;
});
document.addEventListener("session-ended", (event) => {
  const form = document.querySelector("form[data-entry-form]");
  if (form && typed) {
    form.requestSubmit();
  } else {
    location.assign(event.detail.signin);
  }
});

// Sign-in forms tell the server the browser's time zone (an IANA name such as
// America/Chicago), so dates are shown on the patient's own calendar. Without JavaScript the
// field stays empty and the account keeps the zone it has.
document.addEventListener("DOMContentLoaded", () => {
  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    return;
  }
  for (const input of document.querySelectorAll("input[data-browser-zone]")) input.value = zone;
});
