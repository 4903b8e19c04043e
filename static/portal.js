// A page that watches a sync reloads itself when the sync ends (HX-Refresh). If the person has
// already set off somewhere else, that reload would cancel where they were going: skip it.
let leaving = false;
addEventListener("beforeunload", () => { leaving = true; });
addEventListener("pageshow", () => { leaving = false; });
document.addEventListener("htmx:beforeOnLoad", (event) => {
  if (leaving) event.preventDefault();
});
