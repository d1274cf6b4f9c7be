// End-to-end check with the official Node.js driver (npm `mongodb`) against a
// running cmkdb: `node crud.js <connection string> <database>`.
// Every step asserts; the script exits non-zero on the first failure and
// prints one JSON line {"ok":true,"steps":[...]} when all pass.
'use strict';

const assert = require('node:assert/strict');
const { MongoClient, MongoServerError } = require('mongodb');

const [uri, dbName = 'node_e2e'] = process.argv.slice(2);
if (!uri) {
  console.error('usage: node crud.js <uri> [database]');
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
  const client = new MongoClient(uri, {
    serverSelectionTimeoutMS: 30000,
    connectTimeoutMS: 20000,
    socketTimeoutMS: 60000,
    retryWrites: false,
    retryReads: false,
  });
  await client.connect();
  try {
    const db = client.db(dbName);
    const coll = db.collection('people');

    await step('ping', async () => {
      const r = await db.admin().command({ ping: 1 });
      assert.equal(r.ok, 1);
    });

    await step('insertMany', async () => {
      const docs = [];
      for (let i = 0; i < 250; i++) {
        docs.push({ _id: i, name: `person-${String(i).padStart(3, '0')}`, age: 20 + (i % 50), team: i % 3 === 0 ? 'red' : 'blue' });
      }
      const r = await coll.insertMany(docs);
      assert.equal(r.insertedCount, 250);
      assert.equal(Object.keys(r.insertedIds).length, 250);
    });

    await step('find cursor with batchSize across getMore', async () => {
      const cursor = coll.find({ team: 'blue' }).sort({ _id: 1 }).batchSize(7);
      let n = 0;
      let last = -1;
      for await (const doc of cursor) {
        assert.ok(doc._id > last, 'sorted by _id');
        assert.equal(doc.team, 'blue');
        last = doc._id;
        n++;
      }
      assert.equal(n, 250 - 84); // 84 multiples of 3 in [0, 250)
    });

    await step('find filter projection limit', async () => {
      const docs = await coll.find({ age: { $gte: 65 } }, { projection: { _id: 0, name: 1 } }).sort({ name: -1 }).limit(3).toArray();
      assert.deepEqual(docs, [{ name: 'person-249' }, { name: 'person-248' }, { name: 'person-247' }]);
    });

    await step('updateOne', async () => {
      const r = await coll.updateOne({ _id: 43 }, { $set: { team: 'green' }, $inc: { age: 100 } });
      assert.equal(r.matchedCount, 1);
      assert.equal(r.modifiedCount, 1);
      const doc = await coll.findOne({ _id: 43 });
      assert.equal(doc.team, 'green');
      assert.equal(doc.age, 20 + 43 + 100);
    });

    await step('updateOne upsert', async () => {
      const r = await coll.updateOne({ _id: 1000 }, { $set: { name: 'new' } }, { upsert: true });
      assert.equal(r.upsertedCount, 1);
      assert.equal(r.upsertedId, 1000);
    });

    await step('deleteMany', async () => {
      const r = await coll.deleteMany({ team: 'red' });
      assert.equal(r.deletedCount, 84);
      assert.equal(await coll.countDocuments({}), 250 - 84 + 1);
    });

    await step('duplicate key error is code 11000', async () => {
      await assert.rejects(coll.insertOne({ _id: 1, name: 'again' }), (err) => {
        assert.ok(err instanceof MongoServerError, `a MongoServerError, got ${err}`);
        assert.equal(err.code, 11000);
        return true;
      });
    });

    await step('unique index duplicate is code 11000', async () => {
      await coll.createIndex({ name: 1 }, { unique: true });
      await assert.rejects(coll.insertOne({ _id: 5000, name: 'person-001' }), (err) => {
        assert.equal(err.code, 11000);
        return true;
      });
    });

    await step('aggregate', async () => {
      const r = await coll.aggregate([{ $match: { team: { $in: ['blue', 'green'] } } }, { $group: { _id: '$team', n: { $sum: 1 } } }, { $sort: { _id: 1 } }]).toArray();
      assert.deepEqual(r, [{ _id: 'blue', n: 165 }, { _id: 'green', n: 1 }]);
    });

    await step('listDatabases', async () => {
      const r = await db.admin().listDatabases();
      assert.ok(r.databases.some((d) => d.name === dbName), `${dbName} listed in ${JSON.stringify(r.databases.map((d) => d.name))}`);
    });

    await step('unknown command is CommandNotFound 59', async () => {
      await assert.rejects(db.command({ noSuchCommandInCmkdb: 1 }), (err) => {
        assert.equal(err.code, 59);
        return true;
      });
    });
  } finally {
    await client.close();
  }
  console.log(JSON.stringify({ ok: true, steps }));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  console.log(JSON.stringify({ ok: false, steps, error: String(err && err.message) }));
  process.exit(1);
});
