// A minimal key prompt: a server with API keys answers 401; the user pastes a key once, it is kept
// in localStorage (per origin) and sent as "Authorization: Bearer <key>". --dev servers and
// `tracklet ui` never ask.

const STORAGE = "tracklet.apiKey";

export function storedKey(): string | null {
  return localStorage.getItem(STORAGE);
}

export function forgetKey(): void {
  localStorage.removeItem(STORAGE);
}

let pending: Promise<boolean> | null = null;

/** Show the key dialog; resolves true when a key was entered (then retry the request). */
export function askForKey(reason: string): Promise<boolean> {
  pending ??= new Promise<boolean>((resolve) => {
    const dialog = document.createElement("dialog");
    dialog.className = "key-dialog";
    dialog.innerHTML = `<form method="dialog">
      <h2>API key needed</h2>
      <p class="reason"></p>
      <p>Create one with <code>tracklet admin create-key USER</code> on the server's machine.</p>
      <input name="key" type="password" autocomplete="off" placeholder="tlk_..." required />
      <menu><button value="cancel" formnovalidate>Cancel</button><button value="ok">Use key</button></menu>
    </form>`;
    dialog.querySelector(".reason")!.textContent = reason;
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      const key = (dialog.querySelector("input") as HTMLInputElement).value.trim();
      const ok = dialog.returnValue === "ok" && key !== "";
      if (ok) localStorage.setItem(STORAGE, key);
      else forgetKey();
      dialog.remove();
      pending = null;
      resolve(ok);
    });
    dialog.showModal();
  });
  return pending;
}
