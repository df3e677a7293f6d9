// What every window has: its label exposed for tests and a probe of the broadcast path.
import { EVENTS, invoke, listen, windowLabel } from "./ipc.js";

export async function boot() {
  document.body.dataset.window = windowLabel();
  const log = document.getElementById("pings");
  await listen(EVENTS.PING, (ping) => {
    const li = document.createElement("li");
    li.textContent = `ping ${ping.count} from ${ping.from}`;
    log.append(li);
  });
  let count = 0;
  document.getElementById("ping").addEventListener("click", () => {
    count += 1;
    invoke("ping", { count });
  });
  document.body.dataset.ready = "true";
}
