// node-postgres against pgwarden serve (transaction pooling).
// Usage: node check.js URL   — prints one line per check; exits non-zero on failure.
const { Client } = require("pg");
const { from: copyFrom } = require("pg-copy-streams");
const assert = require("assert");

const url = process.argv[2];
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
  await a.end();
  await b.end();
  console.log("all node checks passed");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
