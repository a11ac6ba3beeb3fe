// Small labels whose colour carries the meaning: harm red, safe green, pending grey;
// running blue, paused amber, rolled back red, completed green.

import { h } from "./dom.js";

const STATUS_TEXT = {
  running: "running",
  paused: "paused",
  rolled_back: "rolled back",
  completed: "completed",
};

export function statusPill(status, testid) {
  return h("span", { class: `pill status-${status}`, testid, "data-status": status }, STATUS_TEXT[status] || status);
}

export function verdictPill(verdict) {
  return h("span", { class: `pill verdict-${verdict}`, "data-verdict": verdict }, verdict);
}

export function movePill(move) {
  return h("span", { class: `pill move-${move}` }, move);
}

export function killPill(killed) {
  return killed
    ? h("span", { class: "pill killed", testid: "kill-state", "data-killed": "true" }, "killed: serving the safe default")
    : h("span", { class: "pill live", testid: "kill-state", "data-killed": "false" }, "not killed");
}
