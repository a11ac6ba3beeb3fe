// The in-page confirmation for every action that changes something: what it will do, an
// optional reason for the audit log, and the API's answer (a viewer token is told it needs an
// operator token) without leaving the dialog.

import { ApiError } from "./api.js";
import { h, show } from "./dom.js";

let dialog = null;

function element() {
  if (!dialog) {
    dialog = h("dialog", { class: "confirm", testid: "confirm-dialog", "aria-labelledby": "confirm-title" });
    document.body.append(dialog);
  }
  return dialog;
}

/**
 * Ask, then run. options: {title, body, confirmLabel, danger, reason: bool, run: async
 * (reason) => void}. Resolves true when the action ran, false when cancelled.
 */
export function confirmAction(options) {
  const box = element();
  return new Promise((resolve) => {
    const reason = options.reason
      ? h("textarea", { class: "reason", testid: "confirm-reason", rows: 2, maxlength: 1000, placeholder: "Reason (kept in the audit log)" })
      : null;
    const error = h("p", { class: "dialog-error", testid: "confirm-error", role: "alert", hidden: true });
    const cancel = h("button", { type: "button", class: "button", testid: "cancel" }, "Cancel");
    const confirm = h(
      "button",
      { type: "submit", class: `button ${options.danger ? "danger" : "primary"}`, testid: "confirm" },
      options.confirmLabel,
    );
    const finish = (ran) => {
      box.close();
      resolve(ran);
    };
    cancel.addEventListener("click", () => finish(false));
    box.oncancel = (event) => {
      event.preventDefault();
      finish(false);
    };
    const form = h("form", { method: "dialog" },
      h("h2", { id: "confirm-title" }, options.title),
      h("div", { class: "dialog-body" }, options.body),
      reason,
      error,
      h("div", { class: "dialog-buttons" }, cancel, confirm),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      confirm.disabled = cancel.disabled = true;
      confirm.textContent = "Working…";
      try {
        await options.run(reason ? reason.value.trim() : "");
        finish(true);
      } catch (failure) {
        error.hidden = false;
        error.textContent = failure instanceof ApiError ? failure.explanation : String(failure);
        confirm.disabled = cancel.disabled = false;
        confirm.textContent = options.confirmLabel;
      }
    });
    show(box, form);
    box.showModal();
    (reason || confirm).focus();
  });
}
