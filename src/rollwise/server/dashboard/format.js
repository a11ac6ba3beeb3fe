// How numbers and times read on the page. Times are shown in UTC: the server's clock (and,
// in a demo, its simulated clock) is UTC, and every chart shares it.

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

export function parseTime(text) {
  return text ? Date.parse(text) : null;
}

function pad(value) {
  return String(value).padStart(2, "0");
}

export function clockTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

export function dayLabel(ms) {
  const d = new Date(ms);
  return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]}`;
}

/** "6 Jan 01:39" */
export function dateTime(ms) {
  return ms === null || ms === undefined ? "—" : `${dayLabel(ms)} ${clockTime(ms)}`;
}

/** "2h 05m", "35m", "3d 4h" */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  const minutes = Math.max(0, Math.round(ms / 60000));
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ${pad(minutes % 60)}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

/** What one window of the series spans, after "per": "hour", "15-minute window". */
export function windowText(minutes) {
  return !minutes || minutes === 60 ? "hour" : `${minutes}-minute window`;
}

export function count(value) {
  return value === null || value === undefined ? "—" : Math.round(value).toLocaleString("en-US");
}

/** A rate as a percentage with sensible precision: 2.31%, 0.041%. */
export function percent(value, digits = 3) {
  if (value === null || value === undefined) return "—";
  const p = value * 100;
  if (p === 0) return "0%";
  return `${Number(p.toPrecision(digits))}%`;
}

/** A ratio θ = exposed / baseline as a change: +12%, −4.1%. */
export function change(ratio) {
  if (ratio === null || ratio === undefined) return "—";
  const p = (ratio - 1) * 100;
  const magnitude = Math.abs(p) >= 100 ? Math.round(Math.abs(p)) : Number(Math.abs(p).toPrecision(2));
  return `${p < 0 ? "−" : "+"}${magnitude}%`;
}

export function ms(value, signed = false) {
  if (value === null || value === undefined) return "—";
  const digits = Math.abs(value) >= 100 ? 0 : 1;
  const text = Math.abs(value).toFixed(digits);
  const sign = value < 0 ? "−" : signed ? "+" : "";
  return `${sign}${text} ms`;
}

/** A number in a chart's tick: 1.2k, 0.05, 250. */
export function tick(value) {
  const a = Math.abs(value);
  if (a >= 1e6) return `${Number((value / 1e6).toPrecision(3))}M`;
  if (a >= 1e4) return `${Number((value / 1e3).toPrecision(3))}k`;
  return String(Number(value.toPrecision(4)));
}

export function titleCase(text) {
  return text.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}
