// The dashboard's shell: the token (taken once from the address, then kept for this tab), the
// hash routes, and the poll that keeps the visible page current.

import { api, ApiError, token } from "./api.js";
import { h, show } from "./dom.js";
import { auditPage, flagsPage, rolloutsPage } from "./pages.js";
import { rolloutPage } from "./rollout.js";

const POLL_MS = 1000;
const view = document.getElementById("view");
const notice = document.getElementById("notice");
const session = document.getElementById("session");
let page = null;
let timer = null;
let busy = false;

/**
 * A link may carry the token after the hash (`/dashboard/#token=…`, or
 * `#/rollouts/3?token=…`): keep it for this tab and take it out of the address bar and history.
 */
function takeTokenFromAddress() {
  const hash = location.hash.slice(1);
  const match = /(?:^|[?&])token=([^&]*)/.exec(hash);
  if (!match) return;
  token.set(decodeURIComponent(match[1]));
  const route = hash.slice(0, match.index) + hash.slice(match.index + match[0].length).replace(/^&/, "");
  history.replaceState(null, "", `${location.pathname}${location.search}#${route.replace(/[?&]$/, "") || "/"}`);
}

function route() {
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/";
  const rollout = /^\/rollouts\/(\d+)\/?$/.exec(path);
  if (rollout) return { name: "rollouts", make: () => rolloutPage(Number(rollout[1])) };
  if (path.startsWith("/rollouts")) return { name: "rollouts", make: rolloutsPage };
  if (path.startsWith("/audit")) return { name: "audit", make: auditPage };
  return { name: "flags", make: flagsPage };
}

function say(message) {
  notice.hidden = !message;
  notice.textContent = message || "";
}

function renderSession() {
  if (!token.get()) {
    show(session);
    return;
  }
  const secret = token.get();
  show(session,
    h("span", { class: "live-dot", title: "updates every second while this tab is visible" }),
    h("span", { class: "muted" }, `signed in · token …${secret.slice(-4)}`),
    h("button", { type: "button", class: "button small", testid: "sign-out", onclick: signOut }, "Sign out"));
}

function signOut() {
  token.clear();
  start();
}

function signIn(message) {
  stopPolling();
  page = null;
  renderSession();
  const input = h("input", {
    type: "password", id: "token", testid: "token-input", autocomplete: "off", spellcheck: "false", required: true,
    placeholder: "rw_viewer_…",
  });
  const error = h("p", { class: "dialog-error", testid: "sign-in-error", role: "alert", hidden: !message }, message || "");
  const form = h("form", { class: "card sign-in", testid: "sign-in" },
    h("h1", {}, "Sign in"),
    h("p", {}, "Paste an API token. A viewer token shows everything; pausing, approving, rolling back and the kill switch need an operator token."),
    h("label", { for: "token" }, "Token"),
    input,
    h("button", { type: "submit", class: "button primary", testid: "sign-in-button" }, "Sign in"),
    error,
    h("p", { class: "muted small" }, "Create one with ", h("code", {}, "rollwise token create --role viewer --name me"),
      ", or open the link that ", h("code", {}, "rollwise demo"), " prints. The token is kept for this tab only."));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    token.set(input.value);
    try {
      await api("/flags");
      start();
    } catch (failure) {
      token.clear();
      error.hidden = false;
      error.textContent = failure instanceof ApiError ? failure.explanation : String(failure);
    }
  });
  show(view, form);
  input.focus();
}

function stopPolling() {
  clearTimeout(timer);
  timer = null;
}

async function poll() {
  stopPolling();
  if (!page || document.visibilityState !== "visible") return;
  const current = page;
  let delay = POLL_MS;
  if (!busy) {
    busy = true;
    const started = performance.now();
    try {
      await current.refresh();
      // A server that takes long to answer is asked less often, not piled up on.
      delay = Math.max(POLL_MS, 2 * (performance.now() - started));
      say(null);
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 401) {
        token.clear();
        busy = false;
        signIn(failure.explanation);
        return;
      }
      if (failure instanceof ApiError && failure.status === 404) {
        // Nothing to poll for: say so in the page, not in a banner that keeps coming back.
        busy = false;
        page = null;
        show(view, h("section", { class: "card", testid: "not-found" },
          h("h1", {}, "Not found"), h("p", {}, `The server says: ${failure.message}.`),
          h("p", {}, h("a", { href: "#/rollouts" }, "All rollouts"))));
        return;
      }
      say(failure instanceof ApiError ? failure.explanation : `Could not refresh: ${failure}`);
    } finally {
      busy = false;
    }
  }
  if (page === current && document.visibilityState === "visible") timer = setTimeout(poll, delay);
}

function start() {
  takeTokenFromAddress();
  if (!token.get()) {
    signIn(null);
    return;
  }
  renderSession();
  const { name, make } = route();
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === name);
  }
  page = make();
  show(view, page.element);
  poll();
}

window.addEventListener("hashchange", start);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") poll();
  else stopPolling();
});
start();
