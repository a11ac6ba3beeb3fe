// The list pages: flags (with their kill switches and rollouts), rollouts, and the audit log.
// Each page is {element, refresh(): Promise}; the app polls refresh() while the page is visible.

import { api } from "./api.js";
import { killPill, statusPill } from "./badges.js";
import { confirmAction } from "./dialog.js";
import { h, Region } from "./dom.js";
import { dateTime, parseTime } from "./format.js";

/** The kill switch of a flag, behind a confirmation. */
export function killFlag(key, killed, safeDefault, after) {
  return confirmAction(
    killed
      ? {
          title: `Lift the kill switch of ${key}?`,
          body: h("p", {}, "SDKs go back to serving the flag's rules. A rolled-back rollout stays rolled back."),
          confirmLabel: "Lift the kill switch",
          run: async () => {
            await api(`/flags/${encodeURIComponent(key)}/unkill`, { method: "POST" });
            await after();
          },
        }
      : {
          title: `Kill ${key}?`,
          body: [
            h("p", {}, `Every SDK serves the safe default${safeDefault ? ` (${safeDefault})` : ""} to everyone, within a second.`),
            h("p", {}, "A running rollout of this flag is rolled back by the controller."),
          ],
          confirmLabel: "Kill the flag",
          danger: true,
          run: async () => {
            await api(`/flags/${encodeURIComponent(key)}/kill`, { method: "POST" });
            await after();
          },
        },
  );
}

function rolloutCell(rollout) {
  if (!rollout) return h("span", { class: "muted" }, "none");
  return h("a", { href: `#/rollouts/${rollout.id}`, class: "rollout-link", testid: "rollout-link" },
    `#${rollout.id} `, statusPill(rollout.status), ` stage ${rollout.stage + 1}`);
}

export function flagsPage() {
  const element = h("section", { class: "page", testid: "flags-page" });
  const body = h("div");
  const region = new Region(body);
  element.append(h("h1", {}, "Flags"), body);

  async function refresh() {
    const data = await api("/flags");
    region.update(data, (flags) => {
      if (!flags.flags.length) {
        return h("p", { class: "empty-state" }, "No flags yet: apply a flags file with ", h("code", {}, "rollwise apply flags.yaml"), ".");
      }
      return [
        h("p", { class: "subtitle" }, `Snapshot version ${flags.snapshot_version}. The first variant is each flag's safe default.`),
        h("table", { class: "table", testid: "flags-table" },
          h("thead", {}, h("tr", {}, ["Flag", "Variants", "Kill switch", "Latest rollout", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, flags.flags.map((flag) =>
            h("tr", { testid: "flag-row", "data-flag": flag.key, class: flag.killed ? "row-killed" : null },
              h("td", {}, h("strong", {}, flag.key), flag.description ? h("div", { class: "muted" }, flag.description) : null),
              h("td", {}, flag.variants.map((v, i) => h("span", { class: `chip${i === 0 ? " safe-default" : ""}`, title: i === 0 ? "safe default" : null }, v))),
              h("td", {}, killPill(flag.killed)),
              h("td", {}, rolloutCell(flag.rollout)),
              h("td", { class: "actions" },
                h("button", {
                  type: "button",
                  class: `button small ${flag.killed ? "" : "danger-outline"}`,
                  testid: "flag-kill-button",
                  onclick: () => killFlag(flag.key, flag.killed, flag.variants[0], refresh),
                }, flag.killed ? "Lift kill switch" : "Kill")),
            ))),
        ),
      ];
    });
  }
  return { element, refresh };
}

export function rolloutsPage() {
  const element = h("section", { class: "page", testid: "rollouts-page" });
  const body = h("div");
  const region = new Region(body);
  element.append(h("h1", {}, "Rollouts"), body);

  async function refresh() {
    const rollouts = await api("/rollouts");
    region.update(rollouts, (list) => {
      if (!list.length) {
        return h("p", { class: "empty-state" }, "No rollouts yet: start one with ", h("code", {}, "rollwise rollout start FLAG --plan plan.yaml"), ".");
      }
      return h("table", { class: "table", testid: "rollouts-table" },
        h("thead", {}, h("tr", {}, ["Rollout", "Flag", "Status", "Stage", "Started", "Ended"].map((t) => h("th", {}, t)))),
        h("tbody", {}, list.slice().reverse().map((r) =>
          h("tr", { testid: "rollout-row", "data-rollout": r.id },
            h("td", {}, h("a", { href: `#/rollouts/${r.id}` }, `#${r.id}`)),
            h("td", {}, r.flag),
            h("td", {}, statusPill(r.status)),
            h("td", { class: "num" }, r.stage + 1),
            h("td", {}, dateTime(parseTime(r.started_at))),
            h("td", {}, dateTime(parseTime(r.ended_at))),
          ))),
      );
    });
  }
  return { element, refresh };
}

function detailsText(details) {
  return Object.entries(details || {})
    .map(([key, value]) => `${key}: ${Array.isArray(value) ? value.join("; ") : typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(" · ");
}

export function auditPage() {
  const element = h("section", { class: "page", testid: "audit-page" });
  const body = h("div");
  const region = new Region(body);
  element.append(
    h("h1", {}, "Audit log"),
    h("p", { class: "subtitle" }, "Every change and every applied decision: who or what, when, and why. Newest first; the log is append-only."),
    body,
  );

  async function refresh() {
    const entries = await api("/audit?limit=300");
    region.update(entries, (list) =>
      h("table", { class: "table audit", testid: "audit-table" },
        h("thead", {}, h("tr", {}, ["When", "Who", "Action", "Target", "Details"].map((t) => h("th", {}, t)))),
        h("tbody", {}, list.map((e) =>
          h("tr", { testid: "audit-row", class: `action-${e.action.replace(/\./g, "-")}` },
            h("td", { class: "nowrap" }, dateTime(parseTime(e.at))),
            h("td", { class: "nowrap" }, e.actor),
            h("td", { class: "nowrap" }, h("code", {}, e.action)),
            h("td", {}, e.target),
            h("td", { class: "details" }, detailsText(e.details)),
          ))),
      ));
  }
  return { element, refresh };
}
