// Messages: conversations with other staff (unread counts, last message), the thread with
// one peer, a send box (Enter sends, Shift+Enter adds a line). Opening a thread marks the
// unread messages to me as read.

import { startDashboard } from "./shell.js";
import { h, setText, syncList } from "./dom.js";
import { clock, dayName, initials, isoDate, when } from "./format.js";
import { pendingMark } from "./bookings.js";

startDashboard({ kind: "messages", build });

function build(ctx) {
  const { store, user, main } = ctx;
  let peer = null;
  let chosenByUser = false;
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
    if (!peer || !text.trim()) return;
    body.value = "";
    ctx
      .submit({ op: "send_message", message: { id: crypto.randomUUID(), recipient_id: peer, body: text } })
      .catch(() => {
        if (!body.value) body.value = text;
      });
    body.focus();
  });
  document.addEventListener("visibilitychange", () => markRead());

  function conversations() {
    const byPeer = new Map();
    for (const s of store.staffList()) if (s.id !== user.id) byPeer.set(s.id, { id: s.id, name: s.display_name, last: null, unread: 0 });
    for (const e of store.messages()) {
      const m = e.record;
      const other = m.sender_id === user.id ? m.recipient_id : m.sender_id;
      if (other === user.id) continue;
      let c = byPeer.get(other);
      if (!c) {
        c = { id: other, name: store.staffName(other, "Unknown"), last: null, unread: 0 };
        byPeer.set(other, c);
      }
      if (!c.last || m.sent_at > c.last.sent_at) c.last = m;
      if (m.recipient_id === user.id && !m.read_at) c.unread += 1;
    }
    return Array.from(byPeer.values()).sort((a, b) => {
      if (a.last && b.last) return b.last.sent_at.localeCompare(a.last.sent_at);
      if (a.last || b.last) return a.last ? -1 : 1;
      return a.name.localeCompare(b.name);
    });
  }

  function select(id) {
    peer = id;
    chosenByUser = true;
    render();
    body.focus();
  }

  function render() {
    const convs = conversations();
    if (!peer || !convs.some((c) => c.id === peer)) {
      peer = convs.find((c) => c.last)?.id || null;
      chosenByUser = false;
    }
    syncList(peers, convs, {
      key: (c) => c.id,
      sig: (c) => JSON.stringify([c.name, c.unread, c.last && [c.last.id, c.last.body, c.last.sent_at], c.id === peer]),
      build: (c) =>
        h(
          "li",
          { class: ["peer", c.id === peer && "is-current", c.unread > 0 && "has-unread"], dataset: { peerId: c.id } },
          h(
            "button",
            { type: "button", class: "peer-btn", "aria-current": c.id === peer ? "true" : "false", dataset: { focusKey: "peer" }, onClick: () => select(c.id) },
            h("span", { class: "avatar", "aria-hidden": "true" }, initials(c.name)),
            h(
              "span",
              { class: "peer-text" },
              h("span", { class: "peer-name" }, c.name),
              h("span", { class: "peer-last" }, c.last ? (c.last.sender_id === user.id ? `You: ${c.last.body}` : c.last.body) : "No messages yet"),
            ),
            h("span", { class: "peer-meta" }, h("span", { class: "peer-time tabular" }, c.last ? when(c.last.sent_at) : ""), h("span", { class: "unread tabular", dataset: { count: c.unread }, "aria-label": `${c.unread} unread` }, String(c.unread))),
          ),
        ),
      empty: () => h("li", { class: "empty" }, "No other staff yet."),
    });

    const current = convs.find((c) => c.id === peer);
    setText(threadTitle, current ? current.name : "Choose a conversation");
    body.disabled = !current;
    sendBtn.disabled = !current;

    const msgs = store
      .messages()
      .filter((e) => peer && ((e.record.sender_id === user.id && e.record.recipient_id === peer) || (e.record.sender_id === peer && e.record.recipient_id === user.id)))
      .sort((a, b) => a.record.sent_at.localeCompare(b.record.sent_at) || a.record.id.localeCompare(b.record.id));
    const items = [];
    let day = null;
    for (const e of msgs) {
      const d = isoDate(new Date(e.record.sent_at));
      if (d !== day) {
        day = d;
        items.push({ header: d });
      }
      items.push(e);
    }
    const atBottom = threadScroll.scrollHeight - threadScroll.scrollTop - threadScroll.clientHeight < 40;
    const before = thread.childElementCount;
    syncList(thread, items, {
      key: (it) => (it.header ? `day:${it.header}` : it.record.id),
      sig: (it) => (it.header ? `${it.header}|${dayName(it.header)}` : `${JSON.stringify(it.record)}|${it.pending}`),
      build: (it) => (it.header ? h("li", { class: "thread-day" }, dayName(it.header)) : bubble(it)),
      empty: () => h("li", { class: "empty" }, current ? `No messages with ${current.name} yet. Say hello.` : "Pick someone on the left to start a conversation."),
    });
    if (atBottom || before !== thread.childElementCount) threadScroll.scrollTop = threadScroll.scrollHeight;
    markRead();
  }

  function bubble(e) {
    const m = e.record;
    const mine = m.sender_id === user.id;
    return h(
      "li",
      { class: ["message", mine ? "mine" : "theirs", e.pending && "is-pending"], dataset: { messageId: m.id, pending: e.pending ? "true" : "false" } },
      h("div", { class: "message-body" }, m.body),
      h(
        "div",
        { class: "message-meta" },
        h("span", { class: "tabular" }, clock(m.sent_at)),
        e.pending ? pendingMark() : mine ? h("span", { class: "read-mark" }, m.read_at ? "Read" : "Delivered") : null,
      ),
    );
  }

  /** Marks the open thread's unread messages to me as read (once each). */
  function markRead() {
    if (!peer || document.visibilityState === "hidden") return;
    if (!chosenByUser && !document.hasFocus()) return;
    for (const e of store.messages()) {
      const m = e.record;
      if (m.sender_id === peer && m.recipient_id === user.id && !m.read_at && !markRequested.has(m.id)) {
        markRequested.add(m.id);
        ctx.submit({ op: "mark_read", id: m.id }, { probe: false }).catch(() => markRequested.delete(m.id));
      }
    }
  }
  window.addEventListener("focus", () => markRead());

  return { render };
}
