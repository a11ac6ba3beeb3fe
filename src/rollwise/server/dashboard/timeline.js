// The rollout's course: every plan stage as a strip (done, current, ahead; rolled back
// marked), exposure over time, and the ledger's account of who was exposed where.

import { legend, timeChart } from "./charts.js";
import { h } from "./dom.js";
import { clockTime, count, dateTime, dayLabel, duration, parseTime, percent, windowText } from "./format.js";

const STATE_TEXT = {
  done: "done",
  current: "current",
  paused: "paused here",
  rolled_back: "rolled back",
  ahead: "ahead",
};
const STATE_MARK = { done: "✓", current: "●", paused: "❚❚", rolled_back: "✕", ahead: "○" };

/** The time range every chart of the page shares: the rollout's start to now (or its end). */
export function timeDomain(series, rollout) {
  const from = parseTime(rollout.started_at);
  const end = parseTime(rollout.ended_at);
  const now = parseTime(series.now);
  return { from, to: end !== null && end < now ? end : now };
}

/** Vertical markers for the charts: stage changes, pauses, rollbacks, kills. */
export function markers(series) {
  const result = [];
  for (const stage of series.stages) {
    if (stage.index > 0 && stage.entered_at) result.push({ t: parseTime(stage.entered_at), label: stage.name, class: "stage" });
  }
  const named = {
    "rollout.pause": ["paused", "pause"],
    "rollout.resume": ["resumed", "resume"],
    "rollout.rollback": ["rolled back", "rollback"],
    "rollout.complete": ["completed", "complete"],
    "flag.kill": ["killed", "rollback"],
  };
  for (const event of series.events) {
    const known = named[event.action];
    if (known) result.push({ t: parseTime(event.at), label: known[0], class: known[1] });
  }
  return result;
}

function audienceText(stage) {
  const parts = [];
  if (stage.segments.length) parts.push(stage.segments.join(", "));
  if (stage.percent !== null) {
    const shown = stage.assigned_percent !== null && stage.assigned_percent !== stage.percent
      ? `${stage.assigned_percent}% (holdback ${Number((stage.percent - stage.assigned_percent).toFixed(2))}%)`
      : `${stage.percent}%`;
    parts.push(`${shown} of units`);
  }
  return parts.join(" + ") || "—";
}

function stageTimes(stage, nowMs) {
  const entered = parseTime(stage.entered_at);
  if (entered === null) return stage.bake_seconds ? `bake ${duration(stage.bake_seconds * 1000)}` : "not entered";
  const left = parseTime(stage.left_at);
  const end = left ?? nowMs;
  const until = left === null ? "now" : dayLabel(left) === dayLabel(entered) ? clockTime(left) : dateTime(left);
  return `${dateTime(entered)} → ${until} (${duration(end - entered)})`;
}

export function stageStrip(series) {
  const now = parseTime(series.now);
  return h("ol", { class: "stages", testid: "stage-strip" }, series.stages.map((stage) =>
    h("li", { class: `stage state-${stage.state}`, testid: "stage", "data-state": stage.state, "data-stage": stage.name },
      h("div", { class: "stage-top" },
        h("span", { class: "stage-mark", "aria-hidden": "true" }, STATE_MARK[stage.state]),
        h("span", { class: "stage-name" }, stage.name),
        h("span", { class: "stage-state" }, STATE_TEXT[stage.state])),
      h("div", { class: "stage-audience" }, audienceText(stage)),
      h("div", { class: "stage-times" }, stageTimes(stage, now)),
      h("div", { class: "stage-badges" },
        stage.irreversible ? h("span", { class: "badge irreversible", title: "entering it starts writing state a rollback does not undo" }, "⚠ irreversible") : null,
        stage.approval ? h("span", { class: `badge approval${stage.approved ? " approved" : ""}` }, stage.approved ? "approved" : "needs approval") : null,
        stage.exposed_units ? h("span", { class: "badge units" }, `${count(stage.exposed_units)} new unit${stage.exposed_units === 1 ? "" : "s"}`) : null),
    )));
}

/** Where a window's point sits: the middle of the part of it the rollout has lived through. */
export function windowTime(window, domain) {
  const start = Math.max(parseTime(window.start), domain.from);
  const end = Math.min(parseTime(window.end), domain.to);
  return end >= start ? (start + end) / 2 : parseTime(window.start);
}

export function exposureCharts(series, domain, marks, unit) {
  const windows = series.exposure.windows;
  const share = windows.map((w) => ({
    t: windowTime(w, domain),
    v: w.exposed_share,
    title: `${dateTime(parseTime(w.start))}: ${percent(w.exposed_share)} of ${count(w.exposed_requests + w.baseline_requests)} requests exposed`,
  }));
  // The percentage rule's share, per stage, as a step line (segments add to it).
  const assigned = [];
  for (const stage of series.stages) {
    if (!stage.entered_at) continue;
    // Segments only (an internal team, a pilot tenant): no share is assigned; no line.
    const value = stage.assigned_percent === null ? null : stage.assigned_percent / 100;
    assigned.push({ t: parseTime(stage.entered_at), v: value });
    if (stage.left_at) assigned.push({ t: parseTime(stage.left_at), v: value });
  }
  if (assigned.length) assigned.push({ t: domain.to, v: assigned.at(-1).v });
  const anyAssigned = assigned.some((p) => p.v !== null);
  const steps = series.exposure.units.map((u) => ({
    t: parseTime(u.at),
    v: u.units,
    title: `${count(u.units)} unit${u.units === 1 ? "" : "s"} exposed by ${dateTime(parseTime(u.at))}`,
  }));
  const units = [{ t: domain.from, v: 0 }, ...steps, { t: domain.to, v: steps.length ? steps.at(-1).v : 0 }];
  return h("div", { class: "chart-pair" },
    h("figure", { class: "chart-box" },
      h("figcaption", {}, `Share of requests on the exposed side, per ${windowText(series.window_minutes)}`),
      timeChart({
        testid: "exposure-chart",
        label: "exposed share of requests over time",
        x: domain,
        y: { label: "exposed share of requests", format: (v) => percent(v, 2), min: 0 },
        layers: [
          { kind: "line", points: assigned, class: "assigned", step: true },
          { kind: "line", points: share, class: "exposed", dots: true },
        ],
        markers: marks,
      }),
      legend([
        { label: "exposed share", class: "exposed" },
        anyAssigned ? { label: "assigned by the percentage rule", class: "assigned", kind: "dash" } : null,
      ].filter(Boolean))),
    h("figure", { class: "chart-box" },
      h("figcaption", {}, "Units exposed so far (exposure ledger)"),
      timeChart({
        testid: "units-chart",
        label: "exposed units over time",
        x: domain,
        y: { label: `exposed units (${unit})`, min: 0, format: (v) => (Number.isInteger(v) ? count(v) : "") },
        layers: [{ kind: "line", points: units, class: "units", step: true }],
        markers: marks,
      }),
      legend([{ label: "units first exposed, cumulative", class: "units" }])),
  );
}

export function ledgerSummary(series, rollout, unit) {
  const stages = series.stages;
  const total = series.exposure.exposed_units;
  const irreversible = stages.find((stage) => stage.irreversible);
  let note = null;
  if (irreversible && irreversible.entered_at) {
    const since = stages.filter((stage) => stage.index >= irreversible.index).reduce((sum, stage) => sum + stage.exposed_units, 0);
    note = h("div", { class: "callout warn", testid: "irreversible-note" },
      h("strong", {}, `“${irreversible.name}” is irreversible.`),
      ` Since ${dateTime(parseTime(irreversible.entered_at))}, ${count(since)} unit${since === 1 ? "" : "s"} first exposed from this stage on may have written state that turning the flag off does not undo. `,
      `The ledger lists them with the stage and time of their first exposure, a page at a time: `,
      h("code", {}, `GET /api/v1/rollouts/${rollout.id}/ledger?from_stage=${irreversible.index}`), ".");
  } else if (irreversible) {
    note = h("div", { class: "callout", testid: "irreversible-note" },
      `Stage “${irreversible.name}” ahead is irreversible: from there on, a rollback stops exposure but does not undo state written by the new path.`);
  }
  return [
    h("h2", {}, "Exposure ledger"),
    h("p", { class: "subtitle" }, `${count(total)} unit${total === 1 ? "" : "s"} (${unit}) exposed in total, counted at their first exposure.`),
    h("table", { class: "table compact" },
      h("thead", {}, h("tr", {}, h("th", {}, "Stage"), h("th", { class: "num" }, "New units"))),
      h("tbody", {}, stages.filter((stage) => stage.entered_at).map((stage) =>
        h("tr", { testid: "ledger-row" },
          h("td", {}, stage.name, " ", stage.irreversible ? h("span", { class: "badge irreversible" }, "⚠ irreversible") : null),
          h("td", { class: "num" }, count(stage.exposed_units)))))),
    note,
  ];
}
