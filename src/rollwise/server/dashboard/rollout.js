// The rollout page: where it stands and what the controller would do now, the stage timeline
// and exposure, one card per guard, the segments, the decision log and the ledger — and the
// buttons a person uses to step in, each behind a confirmation.

import { api } from "./api.js";
import { killPill, movePill, statusPill } from "./badges.js";
import { DecisionLog } from "./decisions.js";
import { confirmAction } from "./dialog.js";
import { h, Region } from "./dom.js";
import { dateTime, parseTime } from "./format.js";
import { guardCard, segmentTable } from "./guards.js";
import { killFlag } from "./pages.js";
import { exposureCharts, ledgerSummary, markers, stageStrip, timeDomain } from "./timeline.js";

const LOG_LIMIT = 80;

/** Whether the server's clock is simulated, and how fast, from what it reports over time. */
class ClockWatch {
  constructor() {
    this.first = null;
    this.simulated = false;
  }

  describe(serverNow) {
    const wall = Date.now();
    const sim = parseTime(serverNow);
    if (this.first === null) this.first = { wall, sim };
    const elapsed = wall - this.first.wall;
    const speed = elapsed > 2500 ? (sim - this.first.sim) / elapsed : null;
    const simulated = Math.abs(sim - wall) > 120000 || (speed !== null && speed > 1.5);
    this.simulated = simulated;
    if (!simulated) return `server time ${dateTime(sim)} UTC`;
    return `simulated time ${dateTime(sim)} UTC${speed !== null ? ` · ${Math.round(speed)}× real time` : ""}`;
  }
}

/** The next stage ahead that needs an approval nobody has given yet. */
function nextApproval(series) {
  const stage = series.stages.find((s) => s.index > series.stage && s.approval && !s.approved);
  return stage ? stage.name : null;
}

function gateChips(decision) {
  const gates = decision.gates || [];
  return h("ul", { class: "gates inline" }, gates.map((g) =>
    h("li", { class: `gate ${g.met ? "met" : "unmet"}`, title: g.name }, g.met ? "✓ " : "… ", g.sentence)));
}

export function rolloutPage(id) {
  const element = h("section", { class: "page rollout", testid: "rollout-page", "data-rollout": id });
  const header = new Region(h("div", { class: "rollout-header" }));
  const actions = h("div", { class: "actions-bar", testid: "rollout-actions" });
  const now = new Region(h("section", { class: "card now", testid: "current-decision" }));
  const timeline = new Region(h("section", { class: "card", testid: "stage-timeline" }));
  const guards = new Region(h("section", { class: "guards", testid: "guards" }));
  const segments = new Region(h("section", { class: "card", testid: "segments" }));
  const log = new DecisionLog(h("section", { class: "card", testid: "decision-log" }));
  const ledger = new Region(h("section", { class: "card", testid: "ledger-summary" }));
  const clock = new ClockWatch();
  const clockLine = h("div", { class: "clock muted", testid: "clock" });
  const loading = h("p", { class: "loading" }, "Loading the rollout…");
  element.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/rollouts" }, "Rollouts"), ` / #${id}`),
    loading,
    header.element, clockLine, actions, now.element, timeline.element, guards.element,
    segments.element,
    h("div", { class: "two-columns" }, log.element, ledger.element),
  );
  let actionSignature = null;

  function renderActions(rollout, series) {
    const live = rollout.status === "running" || rollout.status === "paused";
    const approval = nextApproval(series);
    const signature = JSON.stringify([rollout.status, approval, series.killed, live]);
    if (signature === actionSignature) return;
    actionSignature = signature;
    const button = (label, testid, enabled, cls, onclick, title) =>
      h("button", { type: "button", class: `button ${cls}`, testid, disabled: !enabled, title, onclick }, label);
    const change = (path, title, body, confirmLabel, extra = {}) => () =>
      confirmAction({
        title,
        body,
        confirmLabel,
        reason: extra.reason !== false,
        danger: extra.danger,
        run: async (reason) => {
          await api(`/rollouts/${id}/${path}`, { method: "POST", body: extra.body || { reason } });
          await refresh();
        },
      });
    actions.replaceChildren(
      button("Pause", "pause-button", rollout.status === "running", "", change("pause",
        `Pause rollout #${id}?`, h("p", {}, "Exposure stays where it is; the controller stops judging until someone resumes."), "Pause"),
        "hold exposure where it is"),
      button("Resume", "resume-button", rollout.status === "paused", "", change("resume",
        `Resume rollout #${id}?`, h("p", {}, "The controller judges the current stage again and expands when its gates are met."), "Resume")),
      button(approval ? `Approve “${approval}”` : "Approve", "approve-button", live && approval !== null, "", change("approve",
        `Approve entering “${approval}”?`,
        h("p", {}, `The controller may then expand into “${approval}” once every gate is met and every guard is safe.`),
        "Approve", { body: { stage: approval }, reason: false }),
        approval ? `approve entering ${approval}` : "no stage ahead needs approval"),
      button("Roll back", "rollback-button", live, "danger-outline", change("rollback",
        `Roll back rollout #${id}?`,
        h("p", {}, `Every SDK serves the rollback variant to everyone. This ends the rollout; the ledger keeps who was exposed.`),
        "Roll back", { danger: true })),
      h("span", { class: "spacer" }),
      killPill(series.killed),
      button(series.killed ? "Lift kill switch" : "Kill switch", "kill-button", true, series.killed ? "" : "danger",
        () => killFlag(rollout.flag, series.killed, null, refresh)),
    );
  }

  function renderHeader(rollout, series) {
    const stage = series.stages[rollout.stage];
    return [
      h("h1", { testid: "rollout-flag" }, rollout.flag),
      h("div", { class: "header-facts" },
        statusPill(rollout.status, "rollout-status"),
        h("span", {}, "stage ", h("strong", { testid: "current-stage" }, stage ? stage.name : rollout.stage + 1),
          ` (${rollout.stage + 1} of ${series.stages.length})`),
        h("span", { class: "muted" }, `rollout #${rollout.id} · plan ${rollout.plan_id} · unit ${series.plan.unit} · variant ${series.plan.variant}`),
        h("span", { class: "muted" }, `started ${dateTime(parseTime(rollout.started_at))}`,
          rollout.ended_at ? ` · ended ${dateTime(parseTime(rollout.ended_at))}` : "")),
    ];
  }

  function renderNow(decision) {
    const title = decision && decision.live ? "What the controller would do now" : "Last decision";
    if (!decision) return [h("h2", {}, title), h("p", { class: "empty-state" }, "No decision yet.")];
    return [
      h("div", { class: "now-head" }, h("h2", {}, title), movePill(decision.move),
        h("span", { class: "muted" }, dateTime(parseTime(decision.at)))),
      h("ul", { class: "reasons" }, decision.reasons.map((r) => h("li", {}, r))),
      // Gates say what an expansion waits for; after a rollback or a pause they are moot.
      decision.move === "hold" || decision.move === "expand" ? gateChips(decision) : null,
    ];
  }

  let decisions = [];
  let decisionsFor = undefined;

  async function refresh() {
    const series = await api(`/rollouts/${id}/series`);
    // The log itself is fetched only when a decision was kept since the last look.
    if (series.latest_decision_id !== decisionsFor) {
      decisions = await api(`/rollouts/${id}/decisions?limit=${LOG_LIMIT}`);
      decisionsFor = series.latest_decision_id;
    }
    loading.remove();
    const rollout = series.rollout;
    clockLine.textContent = clock.describe(series.now);
    const domain = { ...timeDomain(series, rollout), label: clock.simulated ? "simulated time (UTC)" : "time (UTC)" };
    const marks = markers(series);
    header.update([rollout, series.stages.map((stage) => stage.name)], () => renderHeader(rollout, series));
    renderActions(rollout, series);
    // The live decision's time moves at every poll; redraw when what it says changes.
    const current = series.decision;
    now.update(current && [current.live, current.move, current.reasons, current.gates], () => renderNow(current));
    timeline.update({ stages: series.stages, exposure: series.exposure, events: series.events, domain }, () => [
      h("h2", {}, "Stages"),
      stageStrip(series),
      exposureCharts(series, domain, marks, series.plan.unit),
    ]);
    guards.update({ guards: series.guards, domain, marks, segments: series.segments.rows }, () =>
      series.guards.map((g) => guardCard(g, domain, marks, series.segments.rows, series.window_minutes)));
    segments.update([series.segments.rows, series.segments.hidden], () => segmentTable(series));
    log.update(decisions, series);
    ledger.update([series.stages, series.exposure.exposed_units], () => ledgerSummary(series, rollout, series.plan.unit));
  }

  return { element, refresh };
}
