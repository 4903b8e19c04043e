// Entry forms: tell the server the browser's time zone, and start "When" at the local time now.
// Without JavaScript the form still works: times are then taken as UTC.
document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-entry-form]")) {
    const tz = form.querySelector("input[name=tz]");
    const when = form.querySelector("input[name=when]");
    if (when && when.dataset.now === "1") {
      const now = new Date();
      now.setMinutes(now.getMinutes() - now.getTimezoneOffset());
      when.value = now.toISOString().slice(0, 16);
    }
    if (tz && (!when || when.dataset.now === "1" || tz.value === "0")) {
      tz.value = String(new Date().getTimezoneOffset());
    }
  }
});
