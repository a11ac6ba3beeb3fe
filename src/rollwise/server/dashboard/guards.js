// One card per guard: the exposed side against the baseline per window (with 95 % intervals and
// the tolerated line), and the judged effect over time with its anytime-valid bounds against
// the tolerance. Then the per-segment verdicts, worst first.

import { verdictPill } from "./badges.js";
import { legend, timeChart } from "./charts.js";
import { h, s } from "./dom.js";
import { change, count, dateTime, ms, parseTime, percent, tick, titleCase, windowText } from "./format.js";
import { windowTime } from "./timeline.js";

/** How the guard's values read: rates as percentages, latency in ms, gauges as they are. */
function valueFormat(guard) {
  if (guard.kind === "rate") return (v) => percent(v, 3);
  if (guard.kind === "latency") return (v) => ms(v);
  return (v) => tick(v);
}

/** How an effect reads: a ratio as a change (+12%), a latency difference in signed ms. */
export function effectFormat(kind) {
  return kind === "rate" ? change : (v) => ms(v, true);
}

function guardSubtitle(guard) {
  const parts = [guard.kind];
  if (guard.tolerance) parts.push(`tolerance ${guard.tolerance}`);
  if (guard.maximum !== null) parts.push(`max ${guard.kind === "rate" ? percent(guard.maximum) : tick(guard.maximum)}`);
  if (guard.minimum !== null) parts.push(`min ${tick(guard.minimum)}`);
  if (guard.kind !== "gauge") parts.push(`${guard.worse} is worse`);
  if (guard.by.length) parts.push(`also judged by ${guard.by.join(", ")}`);
  parts.push(`on regression: ${guard.on_regression}`);
  return parts.join(" · ");
}

function sidesChart(guard, domain, marks, windowMinutes) {
  const format = valueFormat(guard);
  const side = (name) => guard.windows.map((w) => ({
    t: windowTime(w, domain),
    v: w[name].value,
    lo: w[name].lower,
    hi: w[name].upper,
    title: `${name} ${dateTime(parseTime(w.start))}: ${format(w[name].value)} over ${count(w[name].requests)} requests` +
      (w[name].lower !== null ? ` (95% ${format(w[name].lower)} – ${w[name].upper === null ? "∞" : format(w[name].upper)})` : ""),
  }));
  const exposed = side("exposed");
  const baseline = side("baseline");
  const tolerated = guard.windows.map((w) => ({ t: windowTime(w, domain), v: w.tolerated }));
  const worseUp = guard.worse === "higher";
  const what = guard.kind === "rate" ? `${guard.metric} rate` : `${guard.label} (ms)`;
  return h("figure", { class: "chart-box" },
    h("figcaption", {}, `${titleCase(`per ${windowText(windowMinutes)}`)}: exposed vs baseline, 95% intervals`),
    timeChart({
      testid: "guard-chart",
      label: `${guard.label}: exposed vs baseline per ${windowText(windowMinutes)}`,
      x: domain,
      y: { label: what, format },
      layers: [
        { kind: worseUp ? "zoneAbove" : "zoneBelow", points: tolerated, class: "harm", domain: false },
        { kind: "band", points: baseline, class: "baseline" },
        { kind: "band", points: exposed, class: "exposed", domain: false },
        { kind: "line", points: tolerated, class: "tolerated" },
        { kind: "line", points: baseline, class: "baseline", dots: true },
        { kind: "line", points: exposed, class: "exposed", dots: true, testid: "exposed-line" },
      ],
      markers: marks,
    }),
    legend([
      { label: "exposed", class: "exposed" },
      { label: "baseline", class: "baseline" },
      { label: "95% interval", class: "exposed", kind: "band" },
      { label: `worse than tolerated${guard.tolerance ? ` (${guard.tolerance})` : ""}`, class: "harm", kind: "zone" },
    ]));
}

function effectChart(guard, domain, marks) {
  const effect = guard.effect;
  const format = effectFormat(guard.kind);
  const points = effect.points.map((p) => ({
    t: parseTime(p.at),
    v: p.estimate,
    lo: p.lower,
    hi: p.upper,
    class: `verdict-${p.verdict}${p.live ? " live" : ""}`,
    r: p.live ? 4 : 2.4,
    title: `${p.live ? "now" : dateTime(parseTime(p.at))}: ${format(p.estimate)} (bounds ${format(p.lower)} … ${format(p.upper)}), ${p.verdict}`,
  }));
  // An absolute tolerance (0.5pp) is a ratio that moves with the baseline rate: then the
  // tolerance is drawn as it was at each decision, not as one line.
  const thresholds = effect.points.map((p) => ({ t: parseTime(p.at), v: p.threshold ?? effect.threshold }));
  const known = thresholds.map((p) => p.v).filter((v) => v !== null && v !== undefined);
  const threshold = effect.threshold ?? (known.length ? known.at(-1) : null);
  const moving = known.length > 1 && Math.max(...known) - Math.min(...known) > 1e-9;
  const reach = threshold === null ? (effect.scale === "ratio" ? 0.5 : 50) : Math.abs(threshold - effect.neutral);
  const worseUp = guard.worse === "higher";
  const layers = [];
  const toleranceLabel = ["tolerance", format(threshold)];
  if (moving) layers.push({ kind: worseUp ? "zoneAbove" : "zoneBelow", points: thresholds, class: "harm", domain: false });
  else if (threshold !== null) layers.push({ kind: "beyond", value: threshold, direction: worseUp ? "above" : "below", class: "harm" });
  layers.push(
    { kind: "band", points, class: "effect" },
    { kind: "hline", value: effect.neutral, class: "neutral", label: "no change" },
  );
  if (moving) layers.push({ kind: "line", points: thresholds, class: "tolerated", label: toleranceLabel });
  else if (threshold !== null) layers.push({ kind: "hline", value: threshold, class: "tolerance", label: toleranceLabel });
  layers.push({ kind: "line", points, class: "effect", dots: true, testid: "effect-line" });
  const label = effect.scale === "ratio" ? "exposed ÷ baseline, as a change" : `p${Math.round((guard.quantile || 0.95) * 100)} exposed − baseline (ms)`;
  const axisFormat = effect.scale === "ratio" ? change : (v) => `${v > 0 ? "+" : v < 0 ? "−" : ""}${tick(Math.abs(v))}`;
  return h("figure", { class: "chart-box" },
    h("figcaption", {}, "Judged effect over time, with anytime-valid bounds"),
    timeChart({
      testid: "effect-chart",
      label: `${guard.label}: judged effect over time`,
      x: domain,
      // Early bounds are wide (nothing is known yet): keep the tolerance readable.
      y: { label, format: axisFormat, clip: [effect.neutral - 4 * reach, effect.neutral + 4 * reach] },
      layers,
      markers: marks,
    }),
    legend([
      { label: "estimate", class: "effect" },
      { label: "bounds", class: "effect", kind: "band" },
      { label: "beyond tolerance", class: "harm", kind: "zone" },
      { label: "safe", class: "effect verdict-safe", kind: "dot" },
      { label: "pending", class: "effect", kind: "dot" },
      { label: "harm", class: "effect verdict-harm", kind: "dot" },
    ]));
}

function gaugeChart(guard, domain, marks) {
  const points = guard.readings.map((r) => ({ t: parseTime(r.at), v: r.value, title: `${dateTime(parseTime(r.at))}: ${tick(r.value)}` }));
  const layers = [];
  if (guard.maximum !== null) {
    layers.push({ kind: "beyond", value: guard.maximum, direction: "above", class: "harm" });
    layers.push({ kind: "hline", value: guard.maximum, class: "tolerance", label: ["max", tick(guard.maximum)] });
  }
  if (guard.minimum !== null) {
    layers.push({ kind: "beyond", value: guard.minimum, direction: "below", class: "harm" });
    layers.push({ kind: "hline", value: guard.minimum, class: "tolerance", label: ["min", tick(guard.minimum)] });
  }
  layers.push({ kind: "line", points, class: "gauge", dots: points.length <= 60, testid: "gauge-line" });
  return h("figure", { class: "chart-box" },
    h("figcaption", {}, "Readings (system-wide: not split by variant)"),
    timeChart({
      testid: "guard-chart",
      label: `${guard.metric} readings`,
      // The full width of the card: a gauge has no second chart.
      width: 1160,
      height: 200,
      x: domain,
      y: { label: guard.metric, includeZero: true },
      layers,
      markers: marks,
    }),
    legend([{ label: "reading", class: "gauge" }, { label: "past the limit", class: "harm", kind: "zone" }]));
}

export function guardCard(guard, domain, marks, segmentRows, windowMinutes) {
  // A regression confined to a segment shows in the segment table, not in the whole: say so.
  const harmed = segmentRows.filter((row) => row.metric === guard.metric && row.verdict === "harm");
  const shown = harmed.length ? "harm" : guard.verdict.verdict;
  return h("article", { class: `card guard verdict-border-${shown}`, testid: "guard", "data-metric": guard.metric },
    h("header", { class: "guard-head" },
      h("div", {},
        h("h3", {}, guard.label),
        h("div", { class: "muted" }, guardSubtitle(guard))),
      h("div", { class: "guard-pills" },
        harmed.length ? h("span", { class: "pill verdict-harm" }, `harm in ${harmed.length} segment${harmed.length === 1 ? "" : "s"}`) : null,
        verdictPill(guard.verdict.verdict))),
    h("p", { class: "sentence" }, guard.verdict.sentence),
    harmed.length ? h("p", { class: "segment-harm" }, harmed.map((row) =>
      `${row.attribute} ${row.value}: ${effectFormat(row.kind)(row.estimate)} (bounds ${effectFormat(row.kind)(row.lower)} … ${effectFormat(row.kind)(row.upper)})`).join("; "),
      " — see the segments below.") : null,
    guard.kind === "gauge"
      ? h("div", { class: "chart-single" }, gaugeChart(guard, domain, marks))
      : h("div", { class: "chart-pair" }, sidesChart(guard, domain, marks, windowMinutes), effectChart(guard, domain, marks)),
  );
}

/** How much of its tolerance a segment uses: a bar where the tick is the tolerance. */
function toleranceBar(share) {
  if (share === null) return h("span", { class: "muted" }, "—");
  const level = share >= 1 ? "over" : share >= 0.5 ? "near" : "under";
  const width = Math.max(0, Math.min(share, 2)) * 40;
  return h("span", { class: `share share-${level}`, title: `${Math.round(share * 100)}% of the tolerance used` },
    s("svg", { class: "share-bar", viewBox: "0 0 80 10", width: 80, height: 10, "aria-hidden": "true" },
      s("rect", { class: "share-track", x: 0, y: 2, width: 80, height: 6, rx: 3 }),
      s("rect", { class: "share-fill", x: 0, y: 2, width, height: 6, rx: 3 }),
      s("line", { class: "share-tick", x1: 40, x2: 40, y1: 0, y2: 10 })),
    h("span", { class: "share-text" }, share <= 0 ? "better" : `${Math.round(share * 100)}%`));
}

export function segmentTable(series) {
  const rows = series.segments.rows;
  const hidden = series.segments.hidden;
  if (!rows.length) {
    return [
      h("h2", {}, "Segments"),
      h("p", { class: "empty-state" }, series.guards.some((g) => g.by.length)
        ? "No segment has exposed traffic yet."
        : "No guard is split by segment (a guard's `by:` judges it per tenant, region, …)."),
    ];
  }
  return [
    h("h2", {}, "Segments, worst first"),
    h("p", { class: "subtitle" },
      series.segments.source === "decision"
        ? `As the last decision judged them (${dateTime(parseTime(series.segments.at))}); segments still pending then are not kept in the decision log. `
        : `Each guard split by segment is judged per value, now (${dateTime(parseTime(series.segments.at))}). `,
      hidden ? `${count(hidden)} segment${hidden === 1 ? "" : "s"} with no exposed traffic not shown.` : ""),
    h("table", { class: "table segments", testid: "segment-table" },
      h("thead", {}, h("tr", {},
        ["Segment", "Guard", "Exposed", "Baseline", "Effect", "Bounds", "Of tolerance", "Verdict"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.map((row) => {
        const format = effectFormat(row.kind);
        const rate = (side) => (row.kind === "rate" && side.requests ? percent(side.events / side.requests) : "");
        return h("tr", { testid: "segment-row", class: `verdict-row-${row.verdict}`, "data-segment": `${row.attribute}=${row.value}` },
          h("td", {}, h("span", { class: "muted" }, `${row.attribute} `), h("strong", {}, row.value)),
          h("td", {}, row.metric),
          h("td", { class: "num" }, rate(row.exposed), h("div", { class: "muted small" }, `${count(row.exposed.requests)} req`)),
          h("td", { class: "num" }, rate(row.baseline), h("div", { class: "muted small" }, `${count(row.baseline.requests)} req`)),
          h("td", { class: "num strong" }, format(row.estimate)),
          h("td", { class: "num" }, `${format(row.lower)} … ${format(row.upper)}`),
          h("td", {}, toleranceBar(row.share_of_tolerance)),
          h("td", {}, verdictPill(row.verdict)),
        );
      })),
    ),
  ];
}
