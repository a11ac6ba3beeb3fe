// The decision log, newest first: every decision with its reasons and the numbers behind it,
// people's actions (pause, approve, kill…) among them, and runs of holds folded into one line.

import { movePill, verdictPill } from "./badges.js";
import { h } from "./dom.js";
import { count, dateTime, parseTime, percent, tick } from "./format.js";
import { effectFormat } from "./guards.js";

const ACTIONS = {
  "rollout.start": "started the rollout",
  "rollout.pause": "paused",
  "rollout.resume": "resumed",
  "rollout.rollback": "rolled back",
  "rollout.approve": "approved entering",
  "flag.kill": "turned the kill switch on",
  "flag.unkill": "lifted the kill switch",
};

function evidenceValue(verdict, key) {
  const value = verdict[key];
  if (value === null || value === undefined) return "—";
  if (verdict.kind === "gauge") return tick(value);
  return effectFormat(verdict.kind)(value);
}

function sideText(verdict, side) {
  const tally = verdict[side];
  if (!tally) return "—";
  const [requests, events] = tally;
  return verdict.kind === "rate" && requests ? `${percent(events / requests)} of ${count(requests)}` : count(requests);
}

function verdictRows(verdicts, trigger) {
  return verdicts.map((v) => {
    const isTrigger = trigger && trigger.metric === v.metric && JSON.stringify(trigger.segment) === JSON.stringify(v.segment);
    return h("tr", { class: `verdict-row-${v.verdict}${isTrigger ? " trigger" : ""}` },
      h("td", {}, v.metric, v.segment ? h("span", { class: "muted" }, ` ${v.segment[0]} ${v.segment[1]}`) : null),
      h("td", {}, verdictPill(v.verdict)),
      h("td", { class: "num" }, evidenceValue(v, "estimate")),
      h("td", { class: "num" }, v.kind === "gauge" ? "—" : `${evidenceValue(v, "lower")} … ${evidenceValue(v, "upper")}`),
      h("td", { class: "num" }, v.kind === "gauge" ? `limit ${evidenceValue(v, "threshold")}` : v.tolerance || "—"),
      h("td", { class: "num" }, sideText(v, "exposed")),
      h("td", { class: "num" }, sideText(v, "baseline")));
  });
}

function evidence(decision) {
  const e = decision.evidence || {};
  const verdicts = [...(e.verdicts || []), ...(e.segments || [])];
  const gates = e.gates || [];
  if (!verdicts.length && !gates.length) return null;
  return h("div", { class: "evidence" },
    gates.length ? h("ul", { class: "gates" }, gates.map((g) =>
      h("li", { class: `gate ${g.met ? "met" : "unmet"}` }, g.met ? "✓ " : "… ", g.sentence))) : null,
    verdicts.length ? h("table", { class: "table compact evidence-table" },
      h("thead", {}, h("tr", {}, ["Guard", "Verdict", "Effect", "Bounds", "Tolerance", "Exposed", "Baseline"].map((t) => h("th", {}, t)))),
      h("tbody", {}, verdictRows(verdicts, e.trigger))) : null);
}

function stageName(stages, index) {
  return stages[index] ? stages[index].name : `stage ${index + 1}`;
}

/** What a hold waits for, without its numbers: holds that wait for the same things fold. */
function holdSignature(decision) {
  return decision.reasons.map((reason) => reason.replace(/[-+]?[\d.,]+[%a-z]*/g, "#")).join("|");
}

/** Decisions and people's actions, newest first, with consecutive holds grouped. */
function entries(log, events) {
  const items = log.map((d) => ({ kind: "decision", at: parseTime(d.at), decision: d, key: `d${d.id}` }));
  for (const [index, event] of events.entries()) {
    // The controller's own transitions are already in the log as decisions.
    if (event.actor === "controller" || !ACTIONS[event.action]) continue;
    const at = parseTime(event.at);
    if (items.length && at < items.at(-1).at && log.length >= 80) continue; // older than the page
    items.push({ kind: "event", at, event, key: `e${index}` });
  }
  items.sort((a, b) => b.at - a.at || (a.kind === "event" ? -1 : 1));
  const grouped = [];
  for (const item of items) {
    const last = grouped.at(-1);
    if (item.kind !== "decision" || item.decision.move !== "hold") {
      grouped.push(item);
      continue;
    }
    const waitingFor = holdSignature(item.decision);
    if (last && last.kind === "holds" && last.waitingFor === waitingFor) last.holds.push(item.decision);
    else grouped.push({ kind: "holds", holds: [item.decision], waitingFor, key: `h${item.decision.id}` });
  }
  return grouped;
}

export class DecisionLog {
  constructor(element) {
    this.element = element;
    this.open = new Set();
    this.signature = null;
  }

  update(log, series) {
    const signature = JSON.stringify([log.map((d) => d.id), series.events.length, series.stages.map((s) => s.state)]);
    if (signature === this.signature) return;
    this.signature = signature;
    const list = h("ol", { class: "decisions" }, entries(log, series.events).map((item) => this.render(item, series.stages)));
    this.element.replaceChildren(
      h("h2", {}, "Decision log"),
      h("p", { class: "subtitle" }, "Newest first. Holds are kept when what they wait for changes, and every few minutes; runs of them are folded."),
      log.length || series.events.length ? list : h("p", { class: "empty-state" }, "No decision yet: the controller decides at its next tick."),
    );
  }

  details(key, summary, body) {
    const element = h("details", { "data-key": key, open: this.open.has(key) }, h("summary", {}, summary), body);
    element.addEventListener("toggle", () => (element.open ? this.open.add(key) : this.open.delete(key)));
    return element;
  }

  render(item, stages) {
    if (item.kind === "event") {
      const e = item.event;
      const what = e.action === "rollout.approve" ? `${ACTIONS[e.action]} “${e.reason}”` : ACTIONS[e.action];
      return h("li", { class: `decision person`, testid: "decision-event", "data-action": e.action },
        h("div", { class: "decision-head" },
          h("span", { class: "pill person" }, e.actor),
          h("span", {}, what),
          h("span", { class: "muted" }, dateTime(item.at))),
        e.reason && e.action !== "rollout.approve" ? h("p", { class: "reason-text" }, `“${e.reason}”`) : null);
    }
    if (item.kind === "holds") {
      const latest = item.holds[0];
      const first = item.holds.at(-1);
      const span = item.holds.length > 1 ? `${dateTime(parseTime(first.at))} → ${dateTime(parseTime(latest.at))}` : dateTime(parseTime(latest.at));
      return h("li", { class: "decision hold", testid: "decision", "data-move": "hold" },
        this.details(item.key,
          h("span", { class: "decision-head" },
            movePill("hold"),
            item.holds.length > 1 ? h("span", { class: "count" }, `× ${item.holds.length}`) : null,
            h("span", { class: "muted" }, `${span} · ${stageName(stages, latest.stage)}`),
            h("span", { class: "hold-why" }, latest.reasons[0] || ""),
            latest.reasons.length > 1 ? h("span", { class: "muted" }, `+${latest.reasons.length - 1} more`) : null),
          [h("ul", { class: "reasons" }, latest.reasons.map((r) => h("li", {}, r))), evidence(latest)]));
    }
    const d = item.decision;
    return h("li", { class: `decision decision-${d.move}`, testid: "decision", "data-move": d.move },
      h("div", { class: "decision-head" },
        movePill(d.move),
        h("span", { class: "muted" }, `${dateTime(item.at)} · ${stageName(stages, d.stage)} · controller`)),
      h("ul", { class: "reasons" }, d.reasons.map((r) => h("li", {}, r))),
      this.details(item.key, "Evidence", evidence(d)));
  }
}
