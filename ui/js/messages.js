// Messages: the conversations the backend lists (unread counts, last message), the thread
// with the peer the view shows, a send box (Enter sends, Shift+Enter adds a line). Opening a
// thread marks the unread messages to me in it as read.

import { startDashboard } from "./shell.js";
import { h, setText, syncList } from "./dom.js";
import { clock, dayName, initials, when } from "./format.js";
import { pendingMark } from "./bookings.js";
import { itemKey, rowSig, threadItems } from "./rows.js";

startDashboard({ spec: { dashboard: "messages", peer: null }, build });

function build(ctx) {
  const { view, main } = ctx;
  let chosenByUser = false;
  let current = null; // the conversation shown: { peer: { id, name }, ... }
  let last = null;
  const markRequested = new Set();

  const peers = h("ul", { class: "peer-list", "aria-label": "Conversations" }, h("li", { class: "placeholder" }, "Loading conversations…"));
  const threadTitle = h("h2", { class: "thread-title" }, "Choose a conversation");
  const thread = h("ol", { class: "thread", "aria-live": "polite", "aria-label": "Messages" });
  const threadScroll = h("div", { class: "thread-scroll" }, thread);
  const body = h("textarea", { name: "body", rows: 2, maxlength: 4000, placeholder: "Write a message… (Enter sends, Shift+Enter for a new line)", "aria-label": "Message", disabled: true });
  const sendBtn = h("button", { type: "submit", class: "btn btn-primary", disabled: true }, "Send");
  const form = h("form", { id: "send-message", class: "send-box" }, body, sendBtn);

  main.append(
    h(
      "div",
      { class: "layout-messages" },
      h("section", { class: "panel peers-panel" }, h("div", { class: "panel-head" }, h("h2", null, "Conversations")), peers),
      h("section", { class: "panel thread-panel" }, h("div", { class: "panel-head" }, threadTitle), threadScroll, form),
    ),
  );

  body.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = body.value;
    if (!current || !text.trim()) return;
    body.value = "";
    ctx.submit({ op: "send_message", message: { id: crypto.randomUUID(), recipient_id: current.peer.id, body: text } }).catch(() => {
      if (!body.value) body.value = text;
    });
    body.focus();
  });
  document.addEventListener("visibilitychange", () => markRead());
  window.addEventListener("focus", () => markRead());

  function choose(id) {
    chosenByUser = true;
    view.show({ dashboard: "messages", peer: id });
    body.focus();
  }

  function render(info) {
    last = info;
    const d = info.data;
    // Keep showing the conversation the backend picked: without a peer in the spec, it
    // would pick the most recent one again after every new message.
    if (d.peer && view.spec.peer !== d.peer) view.show({ dashboard: "messages", peer: d.peer });
    current = d.conversations.find((c) => c.peer.id === d.peer) || null;

    syncList(peers, d.conversations, {
      key: (c) => c.peer.id,
      sig: (c) => rowSig(c, c.peer.id === d.peer),
      build: (c) => conversation(c, c.peer.id === d.peer),
      empty: () => h("li", { class: "empty" }, "No other staff yet."),
    });

    setText(threadTitle, current ? current.peer.name : "Choose a conversation");
    body.disabled = !current;
    sendBtn.disabled = !current;

    const atBottom = threadScroll.scrollHeight - threadScroll.scrollTop - threadScroll.clientHeight < 40;
    const before = thread.childElementCount;
    syncList(thread, threadItems(d.thread), {
      key: itemKey,
      sig: (it) => (it.header ? `${it.header}|${dayName(it.header, d.today)}` : rowSig(it)),
      build: (it) => (it.header ? h("li", { class: "thread-day" }, dayName(it.header, d.today)) : bubble(it)),
      empty: () => h("li", { class: "empty" }, current ? `No messages with ${current.peer.name} yet. Say hello.` : "Pick someone on the left to start a conversation."),
    });
    if (info.reset || atBottom || before !== thread.childElementCount) threadScroll.scrollTop = threadScroll.scrollHeight;
    markRead();
  }

  function conversation(c, isCurrent) {
    const lastRow = c.last;
    return h(
      "li",
      { class: ["peer", isCurrent && "is-current", c.unread > 0 && "has-unread"], dataset: { peerId: c.peer.id } },
      h(
        "button",
        { type: "button", class: "peer-btn", "aria-current": isCurrent ? "true" : "false", dataset: { focusKey: "peer" }, onClick: () => choose(c.peer.id) },
        h("span", { class: "avatar", "aria-hidden": "true" }, initials(c.peer.name)),
        h(
          "span",
          { class: "peer-text" },
          h("span", { class: "peer-name" }, c.peer.name),
          h("span", { class: "peer-last" }, lastRow ? (lastRow.mine ? `You: ${lastRow.record.body}` : lastRow.record.body) : "No messages yet"),
        ),
        h(
          "span",
          { class: "peer-meta" },
          h("span", { class: "peer-time tabular" }, lastRow ? when(lastRow.record.sent_at) : ""),
          h("span", { class: "unread tabular", dataset: { count: c.unread }, "aria-label": `${c.unread} unread` }, String(c.unread)),
        ),
      ),
    );
  }

  function bubble(r) {
    const m = r.record;
    return h(
      "li",
      { class: ["message", r.mine ? "mine" : "theirs", r.pending && "is-pending"], dataset: { messageId: m.id, pending: r.pending ? "true" : "false" } },
      h("div", { class: "message-body" }, m.body),
      h(
        "div",
        { class: "message-meta" },
        h("span", { class: "tabular" }, clock(m.sent_at)),
        r.pending ? pendingMark() : r.mine ? h("span", { class: "read-mark" }, m.read_at ? "Read" : "Delivered") : null,
      ),
    );
  }

  /** Marks the shown thread's unread messages to me as read (once each); the backend judges. */
  function markRead() {
    if (!last || !current || document.visibilityState === "hidden") return;
    if (!chosenByUser && !document.hasFocus()) return;
    for (const r of last.data.thread) {
      const m = r.record;
      if (!r.mine && !m.read_at && !markRequested.has(m.id)) {
        markRequested.add(m.id);
        ctx.submit({ op: "mark_read", id: m.id }, { probe: false, quiet: true }).catch(() => markRequested.delete(m.id));
      }
    }
  }

  return { render };
}
