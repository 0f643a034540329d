// The console's calls to the API: the session cookie goes along by itself; a call that
// changes state also carries the CSRF token the gateway set in the figranium_csrf cookie.

const STATE_CHANGING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === "figranium_csrf") return decodeURIComponent(value.join("="));
  }
  return "";
}

export function apiFetch(path, init = {}) {
  const method = (init.method || "GET").toUpperCase();
  const headers = new Headers(init.headers || {});
  if (STATE_CHANGING.has(method)) headers.set("X-CSRF-Token", csrfToken());
  return fetch(path, { ...init, method, headers, credentials: "same-origin" });
}
