// Pieces shared by the screens: the status line, verdict badges, the reason dialog.

import { L, el, errorNode } from "./dom.js";
import { setText } from "./i18n.js";

export const VERDICTS = ["complete", "incomplete", "missing", "pending"];

export function flash(key, vars) {
  const box = document.getElementById("flash");
  box.replaceChildren(L(key, vars));
}

export function flashError(error) {
  const box = document.getElementById("flash");
  box.replaceChildren(errorNode(error, "span"));
}

export function verdictBadge(status) {
  const known = VERDICTS.includes(status) ? status : "pending";
  const badge = el("span", { class: `badge verdict-${known}`, dataset: { verdict: status } });
  setText(badge, `verdict.${known}`);
  return badge;
}

// A reason asked in a modal <dialog> (keyboard: Enter confirms, Escape cancels).
export function askReason(titleKey, labelKey, maxLength = 1000) {
  const dialog = document.getElementById("reason-dialog");
  const input = document.getElementById("reason-input");
  input.maxLength = maxLength;
  setText(document.getElementById("reason-title"), titleKey);
  setText(document.getElementById("reason-label"), labelKey);
  input.value = "";
  return new Promise((resolve) => {
    const cancel = document.getElementById("reason-cancel");
    const onCancel = () => dialog.close("cancel");
    cancel.addEventListener("click", onCancel, { once: true });
    dialog.addEventListener(
      "close",
      () => {
        cancel.removeEventListener("click", onCancel);
        const reason = input.value.trim();
        resolve(dialog.returnValue === "ok" && reason ? reason : null);
      },
      { once: true },
    );
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
}

