// Time charts drawn as inline SVG: lines, confidence bands, tolerance zones, reference lines
// and markers on a shared time axis. Colours come from app.css classes.

import { h, s } from "./dom.js";
import { clockTime, dayLabel, tick } from "./format.js";

const MARGIN = { left: 62, right: 14, top: 22, bottom: 38 };
// Room on the right for the names of reference lines (tolerance, no change).
const LABELLED_RIGHT = 74;
const LABEL_LINE = 12;
const MINUTE = 60000;
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080].map(
  (minutes) => minutes * MINUTE,
);
let clipIds = 0;

/** Round numbers for an axis: about `count` ticks covering [lo, hi]. */
function niceTicks(lo, hi, count) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= raw) || 10 * power;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return { ticks, step };
}

function timeTicks(from, to, width) {
  const wanted = Math.max(2, Math.floor(width / 95));
  const step = TIME_STEPS.find((candidate) => (to - from) / candidate <= wanted) || TIME_STEPS.at(-1);
  const ticks = [];
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) ticks.push(t);
  return ticks;
}

/** The values a layer contributes to the y domain. */
function layerValues(layer) {
  switch (layer.kind) {
    case "line":
      return layer.points.map((p) => p.v);
    case "band":
      return layer.points.flatMap((p) => [p.lo, p.hi]);
    case "hline":
    case "beyond":
      return [layer.value];
    case "zoneAbove":
      return layer.points.map((p) => p.v);
    default:
      return [];
  }
}

function yDomain(spec) {
  const values = spec.layers
    .filter((layer) => layer.domain !== false)
    .flatMap(layerValues)
    .filter((v) => v !== null && v !== undefined && Number.isFinite(v));
  const [clipLo, clipHi] = spec.y.clip || [-Infinity, Infinity];
  const clipped = values.map((v) => Math.min(clipHi, Math.max(clipLo, v)));
  let lo = spec.y.min ?? Math.min(...clipped);
  let hi = spec.y.max ?? Math.max(...clipped);
  if (!clipped.length) [lo, hi] = [spec.y.min ?? 0, spec.y.max ?? 1];
  if (spec.y.includeZero) [lo, hi] = [Math.min(0, lo), Math.max(0, hi)];
  if (hi - lo < 1e-12) [lo, hi] = [lo - (Math.abs(lo) || 1) * 0.1, hi + (Math.abs(hi) || 1) * 0.1];
  const pad = (hi - lo) * 0.08;
  if (spec.y.min === undefined && !(spec.y.includeZero && lo === 0)) lo -= pad;
  if (spec.y.max === undefined) hi += pad;
  return [lo, hi];
}

/** A path through the points, broken where a value is missing. */
function linePath(points, x, y, step) {
  let d = "";
  let open = false;
  let lastY = null;
  for (const p of points) {
    if (p.v === null || p.v === undefined) {
      open = false;
      continue;
    }
    if (open && step) d += `H${x(p.t).toFixed(1)}V${y(p.v).toFixed(1)}`;
    else d += `${open ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
    open = true;
    lastY = p.v;
  }
  return lastY === null ? "" : d;
}

/** A closed area between lo and hi for each run of points; a missing bound is unbounded. */
function bandPath(points, x, y, top, bottom) {
  const runs = [];
  let run = [];
  for (const p of points) {
    if (p.lo === null && p.hi === null) {
      if (run.length) runs.push(run);
      run = [];
    } else run.push(p);
  }
  if (run.length) runs.push(run);
  return runs
    .map((r) => {
      const upper = r.map((p) => `${x(p.t).toFixed(1)},${(p.hi === null ? top : y(p.hi)).toFixed(1)}`);
      const lower = r
        .slice()
        .reverse()
        .map((p) => `${x(p.t).toFixed(1)},${(p.lo === null ? bottom : y(p.lo)).toFixed(1)}`);
      if (r.length === 1) {
        // One point: a short bar, so a single window still shows its interval.
        const [cx, w] = [x(r[0].t), 3];
        const hiY = r[0].hi === null ? top : y(r[0].hi);
        const loY = r[0].lo === null ? bottom : y(r[0].lo);
        return `M${cx - w},${hiY}H${cx + w}V${loY}H${cx - w}Z`;
      }
      return `M${upper.join("L")}L${lower.join("L")}Z`;
    })
    .join("");
}

/**
 * A chart over time. spec: {testid, label, width, height, x: {from, to}, y: {label, format,
 * min, max, includeZero, clip}, layers: [...], markers: [{t, label, class}], empty}.
 * Layers: line {points: [{t, v, title, class}], dots}, band {points: [{t, lo, hi}]},
 * hline {value, label}, beyond {value, direction: "above"|"below"} (a zone past a
 * constant), zoneAbove / zoneBelow {points: [{t, v}]} (a zone past a moving line).
 */
export function timeChart(spec) {
  const width = spec.width || 560;
  const height = spec.height || 220;
  const labelled = spec.layers.some((layer) => (layer.kind === "hline" || layer.kind === "line") && layer.label);
  const plot = {
    left: MARGIN.left,
    right: width - (labelled ? LABELLED_RIGHT : MARGIN.right),
    top: MARGIN.top,
    bottom: height - MARGIN.bottom,
  };
  const [from, to] = [spec.x.from, Math.max(spec.x.to, spec.x.from + MINUTE)];
  const [lo, hi] = yDomain(spec);
  const x = (t) => plot.left + ((t - from) / (to - from)) * (plot.right - plot.left);
  const y = (v) => plot.bottom - ((v - lo) / (hi - lo)) * (plot.bottom - plot.top);
  const clip = `clip-${++clipIds}`;
  const format = spec.y.format || tick;
  const drawn = spec.layers.some((layer) => layer.kind === "line" && layer.points.some((p) => p.v !== null && p.v !== undefined));

  const svg = s("svg", {
    class: "chart",
    testid: spec.testid,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": spec.label,
    "data-drawn": drawn ? "true" : "false",
  });
  svg.append(
    s("defs", {}, s("clipPath", { id: clip }, s("rect", {
      x: plot.left, y: plot.top - 1, width: plot.right - plot.left, height: plot.bottom - plot.top + 2,
    }))),
  );

  // Grid and axes.
  const { ticks } = niceTicks(lo, hi, Math.max(3, Math.floor((plot.bottom - plot.top) / 38)));
  const axes = s("g", { class: "axes" });
  for (const v of ticks) {
    axes.append(
      s("line", { class: "grid", x1: plot.left, x2: plot.right, y1: y(v), y2: y(v) }),
      s("text", { class: "tick y", x: plot.left - 6, y: y(v) + 4 }, format(v)),
    );
  }
  let lastDay = null;
  for (const t of timeTicks(from, to, plot.right - plot.left)) {
    const day = dayLabel(t);
    axes.append(
      s("line", { class: "tickmark", x1: x(t), x2: x(t), y1: plot.bottom, y2: plot.bottom + 4 }),
      s("text", { class: "tick x", x: x(t), y: plot.bottom + 16 }, clockTime(t)),
    );
    if (day !== lastDay && (lastDay !== null || clockTime(t) === "00:00" || t === from)) {
      axes.append(s("text", { class: "tick x day", x: x(t), y: plot.bottom + 28 }, day));
    }
    lastDay = day;
  }
  axes.append(
    s("line", { class: "axis", x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom }),
    s("line", { class: "axis", x1: plot.left, x2: plot.left, y1: plot.top, y2: plot.bottom }),
    s("text", {
      class: "axis-label",
      transform: `translate(14 ${(plot.top + plot.bottom) / 2}) rotate(-90)`,
    }, spec.y.label),
    s("text", { class: "axis-label x", x: plot.right, y: height - 4 }, spec.x.label || "time (UTC)"),
  );
  svg.append(axes);

  const layers = s("g", { "clip-path": `url(#${clip})` });
  for (const layer of spec.layers) {
    const cls = layer.class || "";
    if (layer.kind === "beyond") {
      const edge = y(layer.value);
      const [y1, y2] = layer.direction === "below" ? [edge, plot.bottom] : [plot.top, edge];
      if (y2 > y1) layers.append(s("rect", { class: `zone ${cls}`, x: plot.left, y: y1, width: plot.right - plot.left, height: y2 - y1 }));
    } else if (layer.kind === "zoneAbove" || layer.kind === "zoneBelow") {
      const pts = layer.points.filter((p) => p.v !== null && p.v !== undefined);
      if (pts.length) {
        const edge = layer.kind === "zoneAbove" ? plot.top : plot.bottom;
        // Held flat to the plot's sides so the zone covers the whole time range.
        const path = [`M${plot.left},${edge}`, `L${plot.left},${y(pts[0].v)}`]
          .concat(pts.map((p) => `L${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`))
          .concat([`L${plot.right},${y(pts.at(-1).v)}`, `L${plot.right},${edge}Z`]);
        layers.append(s("path", { class: `zone ${cls}`, d: path.join("") }));
      }
    } else if (layer.kind === "band") {
      const d = bandPath(layer.points, x, y, plot.top - 2, plot.bottom + 2);
      if (d) layers.append(s("path", { class: `band ${cls}`, d }));
    } else if (layer.kind === "hline") {
      layers.append(s("line", { class: `ref ${cls}`, x1: plot.left, x2: plot.right, y1: y(layer.value), y2: y(layer.value) }));
    } else if (layer.kind === "line") {
      const d = linePath(layer.points, x, y, layer.step);
      if (d) layers.append(s("path", { class: `line ${cls}`, d, testid: layer.testid }));
      if (layer.dots) {
        for (const p of layer.points) {
          if (p.v === null || p.v === undefined) continue;
          layers.append(
            s("circle", { class: `dot ${cls} ${p.class || ""}`, cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: p.r || 2.6 },
              p.title ? s("title", {}, p.title) : null),
          );
        }
      }
    }
  }
  svg.append(layers);

  // Reference lines are named in the right margin, clear of the data; names that would
  // collide are pushed apart.
  const lastValue = (layer) => {
    if (layer.kind === "hline") return layer.value;
    const known = layer.points.filter((p) => p.v !== null && p.v !== undefined);
    return known.length ? known.at(-1).v : null;
  };
  const names = spec.layers
    .filter((layer) => (layer.kind === "hline" || layer.kind === "line") && layer.label)
    .map((layer) => ({ layer, value: lastValue(layer) }))
    .filter(({ value }) => value !== null && value >= lo && value <= hi)
    .map(({ layer, value }) => ({ layer, lines: [].concat(layer.label), at: y(value) }))
    .sort((a, b) => a.at - b.at);
  let floor = -Infinity;
  for (const name of names) {
    const height = name.lines.length * LABEL_LINE;
    const top = Math.max(name.at - height / 2 + 3, floor);
    floor = top + height + 2;
    svg.append(s("text", { class: `ref-label ${name.layer.class || ""}`, x: plot.right + 6, y: top + LABEL_LINE - 3 },
      name.lines.map((line, index) => s("tspan", { x: plot.right + 6, dy: index ? LABEL_LINE : 0 }, line))));
  }
  // Markers are labelled newest first: where labels would overlap, the latest event (a
  // rollback, say) keeps its name and the earlier one is left to its line and tooltip.
  let labelStart = Infinity;
  for (const marker of (spec.markers || []).slice().sort((a, b) => b.t - a.t)) {
    if (marker.t < from || marker.t > to) continue;
    svg.append(s("line", { class: `marker ${marker.class || ""}`, x1: x(marker.t), x2: x(marker.t), y1: plot.top - 4, y2: plot.bottom },
      s("title", {}, marker.label)));
    const width = marker.label.length * 6;
    const labelX = Math.max(plot.left, Math.min(x(marker.t) + 3, plot.right + (labelled ? LABELLED_RIGHT - 8 : 0) - width));
    if (labelX + width < labelStart) {
      svg.append(s("text", { class: `marker-label ${marker.class || ""}`, x: labelX, y: plot.top - 8 }, marker.label));
      labelStart = labelX - 6;
    }
  }
  if (!drawn) {
    svg.append(s("text", { class: "empty", x: (plot.left + plot.right) / 2, y: (plot.top + plot.bottom) / 2 }, spec.empty || "no data yet"));
  }
  return svg;
}

/** A legend row: [{label, class, kind: "line"|"band"|"zone"|"dash"}]. */
export function legend(items) {
  return h("div", { class: "legend" }, items.map((item) =>
    h("span", { class: "legend-item" },
      s("svg", { class: "swatch", viewBox: "0 0 22 10", width: 22, height: 10, "aria-hidden": "true" },
        item.kind === "band" || item.kind === "zone"
          ? s("rect", { class: `${item.kind} ${item.class}`, x: 0, y: 1, width: 22, height: 8 })
          : item.kind === "dot"
            ? s("circle", { class: `dot ${item.class}`, cx: 11, cy: 5, r: 4 })
            : s("line", { class: `${item.kind === "dash" ? "ref" : "line"} ${item.class}`, x1: 0, x2: 22, y1: 5, y2: 5 })),
      item.label),
  ));
}
