// The baseline of `npm run bench`: a bare node:http server that answers, for each request target,
// the very bytes apikeyd answered (captured by the bench and handed over in a JSON file), with no
// key check, no path lookup and no envelope. Whatever apikeyd costs beyond this is our own code.
//
//   node scripts/bench/bare-server.mjs <answers.json>
//
// answers.json: [{ "url": "/api/v1/...", "status": 200, "headers": ["Content-Type", "...", ...], "body": "<base64>" }]
// Node adds Date, Connection and Keep-Alive itself, exactly as it does for apikeyd.
import * as http from "node:http";
import { readFileSync } from "node:fs";

const answers = new Map();
for (const a of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
  answers.set(a.url, { status: a.status, headers: a.headers, body: Buffer.from(a.body, "base64") });
}
const NOT_FOUND = { status: 404, headers: ["Content-Length", "0"], body: Buffer.alloc(0) };

const server = http.createServer((req, res) => {
  const answer = answers.get(req.url) ?? NOT_FOUND;
  res.writeHead(answer.status, answer.headers);
  res.end(answer.body);
});
server.listen(0, "127.0.0.1", () => {
  process.stderr.write(`listening url=http://127.0.0.1:${server.address().port}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
