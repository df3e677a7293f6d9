// The peer: a Socket.IO 4.x broadcast server, as the web teams ran it. Every "change" a
// client emits goes to every other connected client. Connection state recovery is on, so
// a client that reconnects within two minutes gets what it missed (the catch-up bench).
// Usage: node server.js PORT; prints "listening PORT" when ready.
"use strict";
const { createServer } = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.argv[2]);
const http = createServer();
const io = new Server(http, {
  transports: ["websocket"],
  perMessageDeflate: false,
  connectionStateRecovery: { maxDisconnectionDuration: 120000, skipMiddlewares: true },
});

io.on("connection", (socket) => {
  socket.on("change", (payload) => socket.broadcast.emit("change", payload));
  // Tells the others a client left, so a catch-up run knows its client is gone before
  // it starts writing.
  socket.on("disconnect", () => io.emit("gone"));
});

// Ready only once the socket listens: the load generator connects right after this line.
http.listen(port, "127.0.0.1", () => console.log(`listening ${port}`));
