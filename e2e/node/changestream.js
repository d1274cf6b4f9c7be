// Change streams with the official Node.js driver against a running cmkdb
// replica set: `node changestream.js <connection string> <database>`.
// Watches a collection (updateLookup) and the database, reads insert,
// update, replace, delete and a transaction's events, resumes from a token
// and ends with drop + invalidate. Prints {"ok":true,...} when every step
// passed; exits non-zero on the first failure.
'use strict';

const assert = require('node:assert/strict');
const { MongoClient } = require('mongodb');

const [uri, dbName = 'node_cs'] = process.argv.slice(2);
if (!uri) {
  console.error('usage: node changestream.js <uri> [database]');
  process.exit(2);
}

const steps = [];
async function step(name, fn) {
  try {
    await fn();
    steps.push(name);
  } catch (err) {
    err.message = `step ${name}: ${err.message}`;
    throw err;
  }
}

async function main() {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 30000, w: 'majority' });
  await client.connect();
  try {
    const db = client.db(dbName);
    const coll = db.collection('events');
    await db.createCollection('events');
    const cs = coll.watch([], { fullDocument: 'updateLookup', maxAwaitTimeMS: 200 });
    const dbcs = db.watch([{ $match: { operationType: { $in: ['insert', 'delete'] } } }], { maxAwaitTimeMS: 200 });
    // A stream starts where the server placed it: open both before writing.
    await cs.tryNext();
    await dbcs.tryNext();
    const seen = [];

    await step('crud events', async () => {
      await coll.insertOne({ _id: 1, n: 1 });
      await coll.updateOne({ _id: 1 }, { $inc: { n: 1 }, $set: { tag: 'x' } });
      await coll.replaceOne({ _id: 1 }, { n: 10 });
      await coll.deleteOne({ _id: 1 });
      for (let i = 0; i < 4; i++) seen.push(await cs.next());
      assert.deepEqual(seen.map((e) => e.operationType), ['insert', 'update', 'replace', 'delete']);
      assert.deepEqual(seen[0].fullDocument, { _id: 1, n: 1 });
      assert.deepEqual(seen[0].ns, { db: dbName, coll: 'events' });
      assert.deepEqual(seen[1].updateDescription.updatedFields, { n: 2, tag: 'x' });
      assert.deepEqual(seen[3].documentKey, { _id: 1 });
      assert.equal(seen[0].clusterTime._bsontype, 'Timestamp');
      assert.ok(seen[1].clusterTime.greaterThan(seen[0].clusterTime));
    });

    await step('updateLookup', async () => {
      await coll.insertOne({ _id: 2, n: 0 });
      await coll.updateOne({ _id: 2 }, { $inc: { n: 5 } });
      await cs.next();
      const upd = await cs.next();
      assert.equal(upd.operationType, 'update');
      assert.deepEqual(upd.fullDocument, { _id: 2, n: 5 });
    });

    await step('database stream with $match', async () => {
      const got = [];
      for (let i = 0; i < 3; i++) got.push(await dbcs.next());
      assert.deepEqual(got.map((e) => [e.operationType, e.documentKey._id]), [['insert', 1], ['delete', 1], ['insert', 2]]);
    });

    await step('resumeAfter', async () => {
      const resumed = coll.watch([], { resumeAfter: seen[1]._id });
      const next = await resumed.next();
      assert.equal(next.operationType, 'replace');
      assert.deepEqual(next._id, seen[2]._id);
      await resumed.close();
    });

    await step('transaction events', async () => {
      const session = client.startSession();
      try {
        await session.withTransaction(async () => {
          await coll.insertOne({ _id: 't1' }, { session });
          await coll.insertOne({ _id: 't2' }, { session });
        });
      } finally {
        await session.endSession();
      }
      const a = await cs.next();
      const b = await cs.next();
      assert.deepEqual([a.documentKey._id, b.documentKey._id], ['t1', 't2']);
      assert.ok(a.clusterTime.equals(b.clusterTime), 'one transaction, one clusterTime');
    });

    await step('drop invalidates', async () => {
      await coll.drop();
      assert.equal((await cs.next()).operationType, 'drop');
      assert.equal((await cs.next()).operationType, 'invalidate');
      assert.ok(cs.closed || !(await cs.hasNext().catch(() => false)));
    });
    await dbcs.close();
    await cs.close();
  } finally {
    await client.close();
  }
  console.log(JSON.stringify({ ok: true, steps }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
