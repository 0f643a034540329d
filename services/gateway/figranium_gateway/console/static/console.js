// Progressive enhancement of the console's pages; every page works without it.
import { apiFetch } from "./csrf.js";

const SEARCH_DELAY_MS = 250;

// The task search updates the list as one types, by fetching the same page the form
// would load and swapping its list in; the form still submits as usual on Enter.
function liveSearch(form) {
  const input = form.querySelector("input[type=search]");
  const list = document.querySelector("[aria-labelledby=list-title]");
  if (!input || !list) return;
  list.setAttribute("aria-live", "polite");
  let timer = 0;
  let latest = 0;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const query = new URLSearchParams({ q: input.value.trim() });
      const asked = ++latest;
      const answer = await apiFetch(`${form.getAttribute("action")}?${query}`);
      if (!answer.ok || asked !== latest) return;
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.querySelector("[aria-labelledby=list-title]");
      if (!fresh) return;
      list.replaceChildren(...fresh.childNodes);
      history.replaceState(null, "", `?${query}`);
    }, SEARCH_DELAY_MS);
  });
}

for (const form of document.querySelectorAll("form[data-live-search]")) liveSearch(form);
