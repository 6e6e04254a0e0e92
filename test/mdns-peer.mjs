// A peer on the test LAN (run inside the peer network namespace by test/mdns-lan.ts): an
// independent mDNS implementation, the multicast-dns package, driven by JSON lines on stdin, with
// every response it hears written as a JSON line on stdout. Commands:
//   {"op":"query","questions":[{"name","type","unicastResponse"?}],"answers"?:[records]}  (known answers)
//   {"op":"claim","name","address"}      answer every question for `name` with an A record
//   {"op":"legacy","questions":[...],"id"}  a legacy unicast query from an ephemeral port
//   {"op":"raw","hex"}                    send these bytes to the group, as they are
import dgram from "node:dgram";
import readline from "node:readline";
import makeMdns from "multicast-dns";
import packet from "dns-packet";

const iface = process.argv[2];
const mdns = makeMdns({ interface: iface, bind: "0.0.0.0", reuseAddr: true, loopback: true });
const claims = new Map();
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const plain = (r) => ({
  name: r.name,
  type: r.type,
  ttl: r.ttl,
  flush: r.flush === true,
  data: Array.isArray(r.data) ? r.data.map((b) => Buffer.from(b).toString("utf8")) : Buffer.isBuffer(r.data) ? r.data.toString("hex") : r.data,
});

mdns.on("response", (res, rinfo) => {
  out({ event: "response", from: rinfo, answers: res.answers.map(plain), additionals: res.additionals.map(plain), time: Date.now() });
});
mdns.on("query", (q, rinfo) => {
  out({ event: "query", from: rinfo, questions: q.questions, authorities: (q.authorities ?? []).map(plain), time: Date.now() });
  for (const question of q.questions) {
    const address = claims.get(question.name.toLowerCase());
    if (address !== undefined) mdns.respond({ answers: [{ name: question.name, type: "A", ttl: 120, flush: true, data: address }] });
  }
});
mdns.on("ready", () => out({ event: "ready" }));
mdns.on("error", (e) => out({ event: "error", message: String(e) }));
mdns.on("warning", (e) => out({ event: "warning", message: String(e) }));

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.op === "query") {
    mdns.query({ questions: cmd.questions.map((q) => ({ name: q.name, type: q.type, class: "IN", ...(q.unicastResponse ? { QU: true } : {}) })), answers: cmd.answers ?? [] });
  } else if (cmd.op === "claim") {
    claims.set(cmd.name.toLowerCase(), cmd.address);
  } else if (cmd.op === "legacy") {
    const socket = dgram.createSocket("udp4");
    socket.bind(0, () => {
      socket.setMulticastInterface(iface);
      socket.on("message", (msg, rinfo) => {
        const res = packet.decode(msg);
        out({ event: "legacy-answer", from: rinfo, id: res.id, questions: res.questions, answers: res.answers.map(plain), additionals: res.additionals.map(plain) });
      });
      socket.send(packet.encode({ id: cmd.id, type: "query", questions: cmd.questions }), 5353, "224.0.0.251");
      setTimeout(() => socket.close(), 2000);
    });
  } else if (cmd.op === "raw") {
    const socket = dgram.createSocket("udp4");
    socket.bind(0, () => {
      socket.setMulticastInterface(iface);
      socket.send(Buffer.from(cmd.hex, "hex"), 5353, "224.0.0.251", () => socket.close());
    });
  }
});
