// The live view of one execution: while it is queued or running, the API's change stream
// (GET /api/executions/stream, admitted by the console session) updates the status and
// appends the log lines and the screenshots as they are taken; when it finishes, the
// page's own server-rendered parts (facts, captures, result, webhook) are fetched again
// and swapped in. Without script the page shows the execution as it was when loaded.
import { apiFetch } from "./csrf.js";

const PARTS = ["facts", "log-lines", "no-logs", "captures", "result", "webhook"];

function follow(live) {
  const id = live.dataset.execution;
  const status = document.getElementById("live-status");
  const phase = document.getElementById("fact-status");
  const logs = document.getElementById("log-lines");
  const query = new URLSearchParams({ runId: id, lastEventId: live.dataset.after });
  const stream = new EventSource(`/api/executions/stream?${query}`);
  let done = false;

  stream.addEventListener("started", (event) => {
    const change = JSON.parse(event.data);
    if (change.phase !== "running") return;
    phase.textContent = "running";
    status.textContent = "This run is running; this page follows it as it goes.";
  });
  stream.addEventListener("log", (event) => {
    const change = JSON.parse(event.data);
    document.getElementById("no-logs")?.remove();
    logs.hidden = false;
    logs.append(`${change.line}\n`);
    logs.scrollTop = logs.scrollHeight;
  });
  stream.addEventListener("capture", (event) => {
    const capture = JSON.parse(event.data);
    // A recording is whole only once the run is over: the finished page brings it.
    if (capture.kind === "screenshot") showScreenshot(id, capture);
  });
  stream.addEventListener("finished", async (event) => {
    if (done) return;
    done = true;
    stream.close();
    const change = JSON.parse(event.data);
    status.textContent = `Finished: ${change.outcome || "done"}. Loading the result…`;
    await refresh();
    document.getElementById("stop-form")?.remove();
    status.textContent = `Finished: ${change.outcome || "done"}.`;
  });
  stream.addEventListener("deleted", () => {
    stream.close();
    status.textContent = "This execution was deleted.";
  });
}

// A screenshot the run has just stored ({name, kind, size, url}), added to the page's
// captures list as the server renders it (made if the run had none yet), once.
function showScreenshot(id, capture) {
  const section = document.getElementById("captures");
  const url = new URL(String(capture.url), location.href);
  if (!section || url.origin !== location.origin || !url.pathname.startsWith("/captures/")) {
    return;
  }
  const href = url.pathname;
  let list = section.querySelector(":scope > ul.captures");
  if (list && [...list.querySelectorAll("a")].some((a) => a.getAttribute("href") === href)) {
    return;
  }
  if (!list) {
    section.querySelector(":scope > p.note")?.remove();
    list = document.createElement("ul");
    list.className = "captures";
    section.append(list);
  }
  const when = typeof capture.at === "number" ? new Date(capture.at) : new Date();
  const image = document.createElement("img");
  image.src = href;
  image.alt = `Screenshot of run ${id} at ${when.toLocaleTimeString()}`;
  const picture = document.createElement("a");
  picture.href = href;
  picture.append(image);
  const name = document.createElement("a");
  name.href = href;
  name.textContent = capture.name;
  const item = document.createElement("li");
  item.append(picture, " ", name, ` (screenshot, ${capture.size} bytes)`);
  list.append(item);
}

// The finished page from the server, its parts swapped into this one (the log keeps its
// place: the server's copy holds every line, also any the stream never carried).
async function refresh() {
  const answer = await apiFetch(location.pathname);
  if (!answer.ok) return;
  const page = new DOMParser().parseFromString(await answer.text(), "text/html");
  for (const id of PARTS) {
    const mine = document.getElementById(id);
    const fresh = page.getElementById(id);
    if (mine && fresh) mine.replaceWith(document.adoptNode(fresh));
    else if (mine) mine.remove();
  }
}

const live = document.getElementById("live");
if (live && live.dataset.execution) follow(live);
