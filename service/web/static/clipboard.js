// Copy buttons. The clipboard API needs a secure context (https, or localhost); elsewhere the
// text is copied through a selection, the way browsers did before it.

export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.readOnly = true;
  area.className = "visually-hidden";
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("the browser refused to copy");
}

// A button that copies `text()` (read when clicked: a streaming answer grows) and says so.
export function copyButton(label, text) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "ghost copy";
  button.textContent = "Copy";
  button.title = label;
  button.setAttribute("aria-label", label);
  button.addEventListener("click", async () => {
    try {
      await copyText(text());
      button.textContent = "Copied";
    } catch {
      button.textContent = "Not copied";
    }
    setTimeout(() => {
      button.textContent = "Copy";
    }, 1500);
  });
  return button;
}
