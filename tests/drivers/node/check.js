// node-postgres against pgwarden serve (transaction pooling).
// Usage: node check.js URL SESSION_URL   — URL in transaction mode, SESSION_URL the same database
// through a session-mode proxy (LISTEN/NOTIFY). Prints one line per check; exits non-zero on failure.
const { Client } = require("pg");
const { from: copyFrom, to: copyTo } = require("pg-copy-streams");
const assert = require("assert");

const url = process.argv[2];
const sessionUrl = process.argv[3];
const ok = (what) => console.log(`ok ${what}`);

async function main() {
  const a = new Client({ connectionString: url, application_name: "node-check" });
  const b = new Client({ connectionString: url });
  await a.connect();
  await b.connect();
  assert.strictEqual((await a.query("SELECT 1 + 1 AS n")).rows[0].n, 2);
  ok("node simple query");
  for (let i = 0; i < 50; i++) {
    const [x, y] = await Promise.all([
      a.query({ name: "double", text: "SELECT $1::int * 2 AS n", values: [i] }),
      b.query({ name: "suffix", text: "SELECT $1::text || 'x' AS s", values: [String(i)] }),
    ]);
    assert.strictEqual(x.rows[0].n, i * 2);
    assert.strictEqual(y.rows[0].s, `${i}x`);
  }
  ok("node named prepared statements across transactions");
  assert.strictEqual((await a.query("SHOW application_name")).rows[0].application_name, "node-check");
  ok("node application_name visible through SHOW");
  await a.query("DROP TABLE IF EXISTS nd; CREATE TABLE nd (id int primary key)");
  await a.query("BEGIN");
  await a.query("INSERT INTO nd VALUES (1)");
  await assert.rejects(a.query("INSERT INTO nd VALUES (1)"), (e) => e.code === "23505");
  await assert.rejects(a.query("SELECT 1"), (e) => e.code === "25P02");
  await a.query("ROLLBACK");
  assert.strictEqual((await a.query("SELECT count(*)::int AS n FROM nd")).rows[0].n, 0);
  ok("node transactions and errors inside them");
  await new Promise((resolve, reject) => {
    const stream = a.query(copyFrom("COPY nd FROM STDIN"));
    stream.on("error", reject);
    stream.on("finish", resolve);
    for (let i = 0; i < 1000; i++) stream.write(`${i}\n`);
    stream.end();
  });
  assert.strictEqual((await a.query("SELECT count(*)::int AS n FROM nd")).rows[0].n, 1000);
  ok("node COPY FROM STDIN");
  const copied = await new Promise((resolve, reject) => {
    let text = "";
    const stream = a.query(copyTo("COPY nd TO STDOUT"));
    stream.on("data", (chunk) => (text += chunk.toString()));
    stream.on("error", reject);
    stream.on("end", () => resolve(text));
  });
  assert.strictEqual(copied.split("\n").filter((l) => l).length, 1000);
  ok("node COPY TO STDOUT");
  const big = await a.query("SELECT repeat('x', 1000) AS v FROM generate_series(1, 100000)");
  assert.strictEqual(big.rows.length, 100000);
  assert.ok(big.rows.every((r) => r.v.length === 1000));
  ok("node large result (100 MB)");
  const sleeper = new Client({ connectionString: url });
  await sleeper.connect();
  const started = Date.now();
  const slow = sleeper.query("SELECT pg_sleep(20)").catch((e) => e);
  await new Promise((r) => setTimeout(r, 300));
  // A CancelRequest carrying the BackendKeyData pgwarden gave this client.
  await new Promise((resolve, reject) => {
    const net = require("net");
    const u = new URL(url);
    const s = net.connect(Number(u.port), u.hostname, () => {
      const buf = Buffer.alloc(16);
      buf.writeInt32BE(16, 0);
      buf.writeInt32BE(80877102, 4);
      buf.writeInt32BE(sleeper.processID, 8);
      buf.writeInt32BE(sleeper.secretKey, 12);
      s.end(buf);
    });
    s.on("close", resolve);
    s.on("error", reject);
  });
  const err = await slow;
  assert.strictEqual(err.code, "57014");
  assert.ok(Date.now() - started < 5000);
  await sleeper.end();
  ok("node cancel of pg_sleep");
  await assert.rejects(a.query("LISTEN jobs"), (e) => e.code === "0A000" && /pool_mode = session/.test(e.message));
  assert.strictEqual((await a.query("SELECT 5 AS n")).rows[0].n, 5);
  ok("node LISTEN refused in transaction mode");
  await a.end();
  await b.end();
  const listener = new Client({ connectionString: sessionUrl });
  const notifier = new Client({ connectionString: sessionUrl });
  await listener.connect();
  await notifier.connect();
  const note = new Promise((resolve) => listener.on("notification", resolve));
  await listener.query("LISTEN jobs");
  await notifier.query("NOTIFY jobs, 'from node'");
  const n = await Promise.race([note, new Promise((_, r) => setTimeout(() => r(new Error("no notification")), 5000))]);
  assert.strictEqual(n.channel, "jobs");
  assert.strictEqual(n.payload, "from node");
  await listener.end();
  await notifier.end();
  ok("node LISTEN/NOTIFY in session mode");
  console.log("all node checks passed");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
